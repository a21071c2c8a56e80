package neutron_test

import (
	"slices"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/dns"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/extradhcpopts"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
)

// TestPortAttributes covers the port and subnet attributes of
// extra_dhcp_opt, dns-integration, port-trusted-vif, subnet-service-types
// and vlan-transparent: what they store, what they change in the native
// topology, and the input Neutron refuses.
func TestPortAttributes(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	n, err := networks.Create(ctx, c, networks.CreateOpts{Name: "pxe"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	sub, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: "10.5.0.0/24"}).Extract()
	if err != nil {
		t.Fatal(err)
	}

	// extra_dhcp_opts: stored as given, served by the port's DHCP host.
	type portDHCP struct {
		ports.Port
		extradhcpopts.ExtraDHCPOptsExt
		dns.PortDNSExt
	}
	var p portDHCP
	err = ports.Create(ctx, c, dns.PortCreateOptsExt{DNSName: "pxe-client", CreateOptsBuilder: extradhcpopts.CreateOptsExt{
		CreateOptsBuilder: ports.CreateOpts{NetworkID: n.ID},
		ExtraDHCPOpts: []extradhcpopts.CreateExtraDHCPOpt{{OptName: "tftp-server", OptValue: "192.0.2.10"},
			{OptName: "bootfile-name", OptValue: "pxelinux.0"}, {OptName: "42", OptValue: "192.0.2.1"},
			{OptName: "nis-domain", OptValue: "ignored-by-the-dhcp-server"}, {OptName: "bootfile-name", OptValue: "boot.ipxe", IPVersion: 6}},
	}}).ExtractInto(&p)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ExtraDHCPOpts) != 5 || p.DNSName != "pxe-client" || len(p.DNSAssignment) != 1 || p.DNSAssignment[0]["hostname"] != "pxe-client" ||
		p.DNSAssignment[0]["fqdn"] != "pxe-client.openstacklocal." {
		t.Fatalf("new port: %+v", p)
	}
	host := func() *model.DHCPHost {
		t.Helper()
		o, err := e.srv.Store().Get(ctx, model.DHCPHostKind, neutron.DerivedID("dhcp-host", p.ID, sub.ID))
		if err != nil {
			t.Fatal(err)
		}
		return o.(*model.DHCPHost)
	}
	h := host()
	want := []model.DHCPOption{{Code: 66, Value: "192.0.2.10"}, {Code: 67, Value: "pxelinux.0"}, {Code: 42, Value: "192.0.2.1"}}
	if !slices.Equal(h.Options, want) || h.Name != "pxe-client" {
		t.Errorf("DHCP host: name %q options %v, want pxe-client %v", h.Name, h.Options, want)
	}
	// An update merges: null removes an option, a new value replaces it.
	v := "ipxe.efi"
	err = ports.Update(ctx, c, p.ID, extradhcpopts.UpdateOptsExt{UpdateOptsBuilder: ports.UpdateOpts{},
		ExtraDHCPOpts: []extradhcpopts.UpdateExtraDHCPOpt{{OptName: "tftp-server"}, {OptName: "bootfile-name", OptValue: &v}}}).ExtractInto(&p)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.ExtraDHCPOpts) != 4 {
		t.Errorf("after the update: %+v", p.ExtraDHCPOpts)
	}
	if h := host(); !slices.Equal(h.Options, []model.DHCPOption{{Code: 67, Value: "ipxe.efi"}, {Code: 42, Value: "192.0.2.1"}}) {
		t.Errorf("DHCP host after the update: %v", h.Options)
	}

	// trusted: admins set and see it; members neither.
	st, doc := e.raw(c, "PUT", "/v2.0/ports/"+p.ID, `{"port": {"trusted": true}}`)
	if st != 200 || doc["port"].(map[string]any)["trusted"] != true {
		t.Errorf("admin sets trusted: %d %v", st, doc)
	}
	member, _ := e.project("tenant")
	mn, err := networks.Create(ctx, member, networks.CreateOpts{Name: "mine"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	st, doc = e.raw(member, "POST", "/v2.0/ports", `{"port": {"network_id": "`+mn.ID+`", "trusted": true}}`)
	if st != 403 || doc["NeutronError"].(map[string]any)["type"] != "PolicyNotAuthorized" {
		t.Errorf("member sets trusted: %d %v", st, doc)
	}

	// Service types: a port takes its address from the subnets that name
	// its device owner, or from those that name none.
	routed, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: "10.6.0.0/24",
		ServiceTypes: []string{"compute:nova"}}).Extract()
	if err != nil || !slices.Equal(routed.ServiceTypes, []string{"compute:nova"}) {
		t.Fatalf("typed subnet: %+v %v", routed, err)
	}
	vm, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: n.ID, DeviceOwner: "compute:nova"}).Extract()
	if err != nil || len(vm.FixedIPs) != 1 || vm.FixedIPs[0].SubnetID != routed.ID {
		t.Errorf("compute port: %+v %v, want its address from the typed subnet", vm, err)
	}
	other, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: n.ID, DeviceOwner: "compute:ironic"}).Extract()
	if err != nil || len(other.FixedIPs) != 1 || other.FixedIPs[0].SubnetID != sub.ID {
		t.Errorf("port of another owner: %+v %v, want its address from the untyped subnet", other, err)
	}
	only, err := networks.Create(ctx, c, networks.CreateOpts{Name: "typed-only"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: only.ID, IPVersion: 4, CIDR: "10.7.0.0/24", ServiceTypes: []string{"network:floatingip"}}).Extract(); err != nil {
		t.Fatal(err)
	}

	e.refused([]refusal{
		{"DHCP option without a value", "POST", "/v2.0/ports", `{"port": {"network_id": "` + n.ID + `", "extra_dhcp_opts": [{"opt_name": "tftp-server"}]}}`, 400, "HTTPBadRequest", "opt_value is required"},
		{"DHCP option with an empty value", "POST", "/v2.0/ports", `{"port": {"network_id": "` + n.ID + `", "extra_dhcp_opts": [{"opt_name": "tftp-server", "opt_value": ""}]}}`, 400, "HTTPBadRequest", "is not a valid opt_value"},
		{"DHCP option of a bad IP version", "POST", "/v2.0/ports", `{"port": {"network_id": "` + n.ID + `", "extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400", "ip_version": 5}]}}`, 400, "HTTPBadRequest", "'5' is not in [4, 6]"},
		{"DHCP option with an unknown key", "POST", "/v2.0/ports", `{"port": {"network_id": "` + n.ID + `", "extra_dhcp_opts": [{"opt_name": "mtu", "opt_value": "1400", "tag": "x"}]}}`, 400, "HTTPBadRequest", "Unrecognized key 'tag'"},
		{"DNS name with a bad label", "POST", "/v2.0/ports", `{"port": {"network_id": "` + n.ID + `", "dns_name": "-bad"}}`, 400, "HTTPBadRequest", "must not start or end with a hyphen"},
		{"DNS domain not qualified", "POST", "/v2.0/networks", `{"network": {"dns_domain": "example.org"}}`, 400, "HTTPBadRequest", "'example.org' is not a FQDN"},
		{"service type of no device owner", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + n.ID + `", "ip_version": 4, "cidr": "10.8.0.0/24", "service_types": ["bogus"]}}`, 400, "InvalidSubnetServiceType", "Subnet service type bogus does not correspond to a valid device owner."},
		{"no subnet serves the device owner", "POST", "/v2.0/ports", `{"port": {"network_id": "` + only.ID + `", "device_owner": "compute:nova"}}`, 409, "IpAddressGenerationFailureNoMatchingSubnet", "No valid service subnet for the given device owner"},
		{"fixed IP in a subnet of another service", "POST", "/v2.0/ports", `{"port": {"network_id": "` + n.ID + `", "fixed_ips": [{"subnet_id": "` + routed.ID + `"}]}}`, 400, "InvalidInput", "fixed_ips included invalid subnet"},
		{"vlan_transparent is not updated", "PUT", "/v2.0/networks/" + n.ID, `{"network": {"vlan_transparent": true}}`, 400, "HTTPBadRequest", "Cannot update read-only attribute vlan_transparent"},
	})
}
