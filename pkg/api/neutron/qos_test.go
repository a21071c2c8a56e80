package neutron_test

import (
	"slices"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/policies"
	qosrules "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/qos/ruletypes"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/addressgroups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/groups"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/security/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
)

// TestQoS: a policy's rules become a native qos-policy (token buckets per
// direction, a DSCP mark) that the ports under it name, their own or
// their network's; the rule types Nagare enforces; the input Neutron
// refuses.
func TestQoS(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	store := e.srv.Store()
	pol, err := policies.Create(ctx, c, policies.CreateOpts{Name: "gold"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	bw, err := qosrules.CreateBandwidthLimitRule(ctx, c, pol.ID, qosrules.CreateBandwidthLimitRuleOpts{MaxKBps: 3000, MaxBurstKBps: 300}).ExtractBandwidthLimitRule()
	if err != nil || bw.Direction != "egress" {
		t.Fatalf("bandwidth limit: %+v %v", bw, err)
	}
	if _, err := qosrules.CreateBandwidthLimitRule(ctx, c, pol.ID, qosrules.CreateBandwidthLimitRuleOpts{MaxKBps: 1000, Direction: "ingress"}).ExtractBandwidthLimitRule(); err != nil {
		t.Fatal(err)
	}
	if _, err := qosrules.CreateDSCPMarkingRule(ctx, c, pol.ID, qosrules.CreateDSCPMarkingRuleOpts{DSCPMark: 26}).ExtractDSCPMarkingRule(); err != nil {
		t.Fatal(err)
	}
	native := func(id string) *model.QoSPolicy {
		t.Helper()
		o, err := store.Get(ctx, model.QoSPolicyKind, id)
		if err != nil {
			t.Fatal(err)
		}
		return o.(*model.QoSPolicy)
	}
	if q := native(pol.ID); q.EgressMaxKbps != 3000 || q.EgressBurstKbit != 300 || q.IngressMaxKbps != 1000 || !q.MarkDSCP || q.DSCPMark != 26 {
		t.Errorf("native policy: %+v", q)
	}
	if got, err := policies.Get(ctx, c, pol.ID).Extract(); err != nil || len(got.Rules) != 3 {
		t.Errorf("policy's rules: %+v %v", got, err)
	}

	n, err := networks.Create(ctx, c, networks.CreateOpts{Name: "qos"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: "10.60.0.0/24"}).Extract(); err != nil {
		t.Fatal(err)
	}
	p, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: n.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	portQoS := func(id string) string {
		t.Helper()
		o, err := store.Get(ctx, model.PortKind, id)
		if err != nil {
			t.Fatal(err)
		}
		return o.(*model.Port).QoSPolicyID
	}
	if q := portQoS(p.ID); q != "" {
		t.Errorf("port under no policy has %q", q)
	}
	// The network's policy reaches its port.
	if st, doc := e.raw(c, "PUT", "/v2.0/networks/"+n.ID, `{"network": {"qos_policy_id": "`+pol.ID+`"}}`); st != 200 {
		t.Fatalf("network policy: %d %v", st, doc)
	}
	if q := portQoS(p.ID); q != pol.ID {
		t.Errorf("port's native policy %q, want the network's %s", q, pol.ID)
	}
	// The port's own policy wins.
	silver, err := policies.Create(ctx, c, policies.CreateOpts{Name: "silver"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	st, doc := e.raw(c, "PUT", "/v2.0/ports/"+p.ID, `{"port": {"qos_policy_id": "`+silver.ID+`"}}`)
	if st != 200 || doc["port"].(map[string]any)["qos_network_policy_id"] != pol.ID {
		t.Fatalf("port policy: %d %v", st, doc)
	}
	if q := portQoS(p.ID); q != silver.ID {
		t.Errorf("port's native policy %q, want its own %s", q, silver.ID)
	}

	pages, err := ruletypes.ListRuleTypes(c).AllPages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	types, _ := ruletypes.ExtractRuleTypes(pages)
	var names []string
	for _, x := range types {
		names = append(names, x.Type)
	}
	if !slices.Equal(names, neutron.EnforcedQoSRuleTypes) {
		t.Errorf("rule types %v", names)
	}
	rt, err := ruletypes.GetRuleType(ctx, c, "dscp_marking").Extract()
	if err != nil || len(rt.Drivers) != 1 {
		t.Errorf("rule type details: %+v %v", rt, err)
	}

	minimal, err := policies.Create(ctx, c, policies.CreateOpts{Name: "min"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := qosrules.CreateMinimumBandwidthRule(ctx, c, minimal.ID, qosrules.CreateMinimumBandwidthRuleOpts{MinKBps: 1000}).ExtractMinimumBandwidthRule(); err != nil {
		t.Fatal(err)
	}
	rulePath := "/v2.0/qos/policies/" + pol.ID
	e.refused([]refusal{
		{"a second egress limit", "POST", rulePath + "/bandwidth_limit_rules", `{"bandwidth_limit_rule": {"max_kbps": 10}}`, 409, "QoSRulesConflict", "conflicts with rule"},
		{"a second DSCP mark", "POST", rulePath + "/dscp_marking_rules", `{"dscp_marking_rule": {"dscp_mark": 10}}`, 409, "QoSRulesConflict", "which already exists in QoS Policy"},
		{"DSCP mark Neutron does not take", "POST", "/v2.0/qos/policies/" + silver.ID + "/dscp_marking_rules", `{"dscp_marking_rule": {"dscp_mark": 7}}`, 400, "HTTPBadRequest", "'7' is not in [0, 8, 10"},
		{"limit without max_kbps", "POST", "/v2.0/qos/policies/" + silver.ID + "/bandwidth_limit_rules", `{"bandwidth_limit_rule": {"max_burst_kbps": 10}}`, 400, "HTTPBadRequest", "Required attribute 'max_kbps' not specified"},
		{"bad direction", "POST", "/v2.0/qos/policies/" + silver.ID + "/bandwidth_limit_rules", `{"bandwidth_limit_rule": {"max_kbps": 10, "direction": "up"}}`, 400, "HTTPBadRequest", "'up' is not in ['egress', 'ingress']"},
		{"negative rate", "POST", "/v2.0/qos/policies/" + silver.ID + "/bandwidth_limit_rules", `{"bandwidth_limit_rule": {"max_kbps": -1}}`, 400, "HTTPBadRequest", "is not in range 0 through 2147483647"},
		{"a policy Nagare cannot enforce on a port", "PUT", "/v2.0/ports/" + p.ID, `{"port": {"qos_policy_id": "` + minimal.ID + `"}}`, 409, "QosRuleNotSupported", "Rule minimum_bandwidth is not supported by port"},
		{"policy in use", "DELETE", "/v2.0/qos/policies/" + silver.ID, "", 409, "QosPolicyInUse", "is used by port"},
		{"rule of another policy", "GET", "/v2.0/qos/policies/" + silver.ID + "/bandwidth_limit_rules/" + bw.ID, "", 404, "QosRuleNotFound", "could not be found"},
		{"unknown rule type", "GET", "/v2.0/qos/rule-types/packet_rate_limit", "", 404, "QosRuleTypeNotFound", ""},
	})
	member, _ := e.project("qos-member")
	if _, err := policies.Create(ctx, member, policies.CreateOpts{Name: "mine"}).Extract(); err == nil {
		t.Error("a member created a QoS policy (Neutron: admin or project manager)")
	}
}

// TestAddressGroups: a group's addresses are the remote of the rules that
// name it, one native rule per prefix, rewritten when they change.
func TestAddressGroups(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	ag, err := addressgroups.Create(ctx, c, addressgroups.CreateOpts{Name: "office", Addresses: []string{"192.0.2.7", "198.51.100.0/24"}}).Extract()
	if err != nil || !slices.Equal(ag.Addresses, []string{"192.0.2.7/32", "198.51.100.0/24"}) {
		t.Fatalf("address group: %+v %v", ag, err)
	}
	g, err := groups.Create(ctx, c, groups.CreateOpts{Name: "ssh-from-office"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	st, doc := e.raw(c, "POST", "/v2.0/security-group-rules", `{"security_group_rule": {"security_group_id": "`+g.ID+`", "direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_address_group_id": "`+ag.ID+`"}}`)
	if st != 201 || doc["security_group_rule"].(map[string]any)["remote_address_group_id"] != ag.ID {
		t.Fatalf("rule: %d %v", st, doc)
	}
	sources := func() []string {
		t.Helper()
		o, err := e.srv.Store().Get(ctx, model.ChainKind, neutron.DerivedID("sg-ingress", g.ID))
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, id := range o.(*model.Chain).RuleIDs {
			r, err := e.srv.Store().Get(ctx, model.RuleKind, id)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, r.(*model.Rule).Src.String())
		}
		slices.Sort(out)
		return out
	}
	if src := sources(); !slices.Equal(src, []string{"192.0.2.7/32", "198.51.100.0/24"}) {
		t.Errorf("native rules' sources %v", src)
	}
	if _, err := addressgroups.AddAddresses(ctx, c, ag.ID, addressgroups.UpdateAddressesOpts{Addresses: []string{"203.0.113.0/25"}}).Extract(); err != nil {
		t.Fatal(err)
	}
	if src := sources(); len(src) != 3 {
		t.Errorf("after adding an address: %v", src)
	}
	if _, err := addressgroups.RemoveAddresses(ctx, c, ag.ID, addressgroups.UpdateAddressesOpts{Addresses: []string{"192.0.2.7"}}).Extract(); err != nil {
		t.Fatal(err)
	}
	if src := sources(); !slices.Equal(src, []string{"198.51.100.0/24", "203.0.113.0/25"}) {
		t.Errorf("after removing an address: %v", src)
	}
	if _, err := rules.Create(ctx, c, rules.CreateOpts{Direction: rules.DirEgress, EtherType: rules.EtherType4, SecGroupID: g.ID, RemoteIPPrefix: "10.0.0.0/8"}).Extract(); err != nil {
		t.Fatal(err)
	}
	e.refused([]refusal{
		{"address already there", "PUT", "/v2.0/address-groups/" + ag.ID + "/add_addresses", `{"addresses": ["198.51.100.0/24"]}`, 400, "AddressesAlreadyExist", "Addresses ['198.51.100.0/24'] already exist in the address group"},
		{"address not there", "PUT", "/v2.0/address-groups/" + ag.ID + "/remove_addresses", `{"addresses": ["10.9.9.9"]}`, 404, "AddressesNotFound", "Addresses ['10.9.9.9/32'] not found in the address group"},
		{"not an address", "POST", "/v2.0/address-groups", `{"address_group": {"addresses": ["nowhere"]}}`, 400, "HTTPBadRequest", "'nowhere' is not a valid IP subnet"},
		{"group in use", "DELETE", "/v2.0/address-groups/" + ag.ID, "", 409, "AddressGroupInUse", "is in use on one or more security group rules"},
		{"two remotes", "POST", "/v2.0/security-group-rules", `{"security_group_rule": {"security_group_id": "` + g.ID + `", "direction": "ingress", "remote_ip_prefix": "10.0.0.0/8", "remote_address_group_id": "` + ag.ID + `"}}`, 400, "SecurityGroupMultipleRemoteEntites", "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided."},
	})
}
