package neutron_test

import (
	"testing"

	fwgroups "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/fwaas_v2/groups"
	fwpolicies "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/fwaas_v2/policies"
	fwrules "github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/fwaas_v2/rules"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
)

// TestFirewall: a firewall group on a router interface compiles its
// policies into two chains the router port filters with (replies, the
// enabled rules in order, drop), rewritten when a rule or the policy
// changes and dropped when the port leaves; neutron-fwaas's refusals.
func TestFirewall(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	store := e.srv.Store()
	n, err := networks.Create(ctx, c, networks.CreateOpts{Name: "fw"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: "10.90.0.0/24"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	r, err := routers.Create(ctx, c, routers.CreateOpts{Name: "r"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	itf, err := routers.AddInterface(ctx, c, r.ID, routers.AddInterfaceOpts{SubnetID: sub.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	web, err := fwrules.Create(ctx, c, fwrules.CreateOpts{Protocol: fwrules.ProtocolTCP, Action: fwrules.ActionAllow, DestinationPort: "80"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	ssh, err := fwrules.Create(ctx, c, fwrules.CreateOpts{Protocol: fwrules.ProtocolTCP, Action: fwrules.ActionReject, DestinationPort: "22", SourceIPAddress: "192.0.2.0/24"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	pol, err := fwpolicies.Create(ctx, c, fwpolicies.CreateOpts{Name: "in", FirewallRules: []string{web.ID}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if p, err := fwpolicies.InsertRule(ctx, c, pol.ID, fwpolicies.InsertRuleOpts{ID: ssh.ID, InsertBefore: web.ID}).Extract(); err != nil || len(p.Rules) != 2 || p.Rules[0] != ssh.ID {
		t.Fatalf("insert rule: %+v %v", p, err)
	}
	g, err := fwgroups.Create(ctx, c, fwgroups.CreateOpts{Name: "g", IngressFirewallPolicyID: pol.ID, Ports: []string{itf.PortID}}).Extract()
	if err != nil || g.Status != "ACTIVE" {
		t.Fatalf("firewall group: %+v %v", g, err)
	}
	routerPort := func() *model.Port {
		t.Helper()
		o, err := store.Get(ctx, model.PortKind, neutron.DerivedID("router-port", itf.PortID))
		if err != nil {
			t.Fatal(err)
		}
		return o.(*model.Port)
	}
	ingress := neutron.DerivedID("fwg-ingress", g.ID)
	if rp := routerPort(); rp.InboundFilterID != ingress || rp.OutboundFilterID != neutron.DerivedID("fwg-egress", g.ID) {
		t.Fatalf("router port filters: %+v", rp)
	}
	chainRules := func(id string) []*model.Rule {
		t.Helper()
		o, err := store.Get(ctx, model.ChainKind, id)
		if err != nil {
			t.Fatal(err)
		}
		var out []*model.Rule
		for _, rid := range o.(*model.Chain).RuleIDs {
			x, err := store.Get(ctx, model.RuleKind, rid)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, x.(*model.Rule))
		}
		return out
	}
	rs := chainRules(ingress)
	if len(rs) != 4 || rs[0].Flow != "return-flow" || rs[1].Type != model.RuleReject || rs[1].DstPort.Start != 22 || rs[1].Src.String() != "192.0.2.0/24" ||
		rs[2].Type != model.RuleAccept || rs[2].DstPort.Start != 80 || rs[3].Type != model.RuleDrop {
		t.Errorf("ingress chain: %+v", rs)
	}
	// Disabling a rule rewrites the chain.
	no := false
	if _, err := fwrules.Update(ctx, c, ssh.ID, fwrules.UpdateOpts{Enabled: &no}).Extract(); err != nil {
		t.Fatal(err)
	}
	if rs := chainRules(ingress); len(rs) != 3 {
		t.Errorf("ingress chain after disabling a rule: %d rules", len(rs))
	}
	// The port leaves the group: the router port filters no more.
	if _, err := fwgroups.Update(ctx, c, g.ID, fwgroups.UpdateOpts{Ports: &[]string{}}).Extract(); err != nil {
		t.Fatal(err)
	}
	if rp := routerPort(); rp.InboundFilterID != "" {
		t.Errorf("router port still filtered: %+v", rp)
	}
	vm, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: n.ID, DeviceOwner: "compute:nova"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	other, err := fwgroups.Create(ctx, c, fwgroups.CreateOpts{Name: "other", Ports: []string{itf.PortID}}).Extract()
	if err != nil {
		t.Fatal(err)
	}

	rule := func(extra string) string { return `{"firewall_rule": {"action": "allow"` + extra + `}}` }
	e.refused([]refusal{
		{"ports without protocol", "POST", "/v2.0/fwaas/firewall_rules", rule(`, "destination_port": "80"`), 400, "FirewallRuleWithPortWithoutProtocolInvalid", "Source/destination port requires a protocol."},
		{"ports with ICMP", "POST", "/v2.0/fwaas/firewall_rules", rule(`, "protocol": "icmp", "source_port": "80"`), 400, "FirewallRuleInvalidICMPParameter", "are not allowed when protocol is set to ICMP"},
		{"address of another version", "POST", "/v2.0/fwaas/firewall_rules", rule(`, "ip_version": 6, "source_ip_address": "10.0.0.0/8"`), 400, "FirewallIpAddressConflict", "IP addresses do not agree with IP Version"},
		{"bad action", "POST", "/v2.0/fwaas/firewall_rules", `{"firewall_rule": {"action": "maybe"}}`, 400, "FirewallRuleInvalidAction", "Action maybe is not supported"},
		{"backwards ports", "POST", "/v2.0/fwaas/firewall_rules", rule(`, "protocol": "tcp", "destination_port": "90:80"`), 400, "FirewallRuleInvalidPortValue", "Invalid value for port 90:80."},
		{"rule in a policy", "DELETE", "/v2.0/fwaas/firewall_rules/" + web.ID, "", 409, "FirewallRuleInUse", "is being used"},
		{"rule twice in a policy", "PUT", "/v2.0/fwaas/firewall_policies/" + pol.ID + "/insert_rule", `{"firewall_rule_id": "` + web.ID + `"}`, 409, "FirewallRuleAlreadyAssociated", "is already associated with firewall policy"},
		{"removing a rule not there", "PUT", "/v2.0/fwaas/firewall_policies/" + pol.ID + "/remove_rule", `{"firewall_rule_id": "0b5d2a5e-0000-4000-8000-000000000000"}`, 400, "FirewallRuleNotAssociatedWithPolicy", "is not associated with firewall policy"},
		{"policy in use", "DELETE", "/v2.0/fwaas/firewall_policies/" + pol.ID, "", 409, "FirewallPolicyInUse", "is being used"},
		{"a VM port", "PUT", "/v2.0/fwaas/firewall_groups/" + g.ID, `{"firewall_group": {"ports": ["` + vm.ID + `"]}}`, 409, "FirewallGroupPortNotSupported", "is not supported by firewall driver"},
		{"a port of another group", "PUT", "/v2.0/fwaas/firewall_groups/" + g.ID, `{"firewall_group": {"ports": ["` + itf.PortID + `"]}}`, 409, "FirewallGroupPortInUse", "already associated with other firewall group(s)"},
		{"an active group", "DELETE", "/v2.0/fwaas/firewall_groups/" + other.ID, "", 409, "FirewallGroupInUse", "is still active"},
	})
}
