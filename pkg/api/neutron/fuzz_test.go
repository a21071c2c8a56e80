package neutron

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// decoded runs a resource's attribute map and decoder over a body.
type decoded struct {
	name   string
	attrs  attrs // nil: none
	decode func(Body, *identity.Context, bool) error
}

func decodes[R any](d decoder[R]) func(Body, *identity.Context, bool) error {
	return func(b Body, c *identity.Context, post bool) error {
		_, err := d(b, c, post)
		return err
	}
}

var decoders = []decoded{
	{"network", networkAttrs, decodes(decodeNetwork)},
	{"subnet", subnetAttrs, decodes(decodeSubnet)},
	{"port", portAttrs, decodes(decodePort)},
	{"router", routerAttrs, decodes(decodeRouter)},
	{"floatingip", floatingIPAttrs, decodes(decodeFloatingIP)},
	{"security_group", groupAttrs, decodes(decodeGroup)},
	{"security_group_rule", ruleAttrs, decodes(decodeRule)},
	{"port_forwarding", forwardingAttrs, func(b Body, _ *identity.Context, post bool) error {
		_, err := decodeForwarding(b, post)
		return err
	}},
	{"quota", nil, func(b Body, _ *identity.Context, _ bool) error { // every key is a resource: no attribute map
		_, err := decodeQuotas(b)
		return err
	}},
}

// FuzzDecode feeds arbitrary request bodies to every resource's attribute
// map and decoder, as an admin and as a member, for creates and updates:
// decoding never panics, and what it refuses is the client's fault (a
// BadRequest or a policy refusal), never an internal error.
func FuzzDecode(f *testing.F) {
	for _, seed := range []string{
		`{"name": "n", "admin_state_up": "true", "mtu": "1400", "provider:network_type": "vlan", "provider:physical_network": "p", "provider:segmentation_id": 5}`,
		`{"segments": [{"provider:network_type": "flat", "provider:physical_network": "p", "provider:segmentation_id": 0}]}`,
		`{"network_id": "0B5D2A5E-0000-4000-8000-000000000000", "ip_version": 6, "cidr": "2001:db8::/64", "ipv6_address_mode": "slaac", "gateway_ip": null, "allocation_pools": [{"start": "2001:db8::10", "end": "2001:db8::20"}], "dns_nameservers": ["2001:db8::53"], "host_routes": [{"destination": "::/0", "nexthop": "2001:db8::1"}]}`,
		`{"network_id": "0b5d2a5e-0000-4000-8000-000000000000", "fixed_ips": [{"subnet_id": "0b5d2a5e-0000-4000-8000-000000000001", "ip_address": "10.0.0.5"}], "mac_address": "FA163E000001", "allowed_address_pairs": [{"ip_address": "10.0.0.0/24", "mac_address": null}], "security_groups": null, "binding:profile": {"capabilities": ["switchdev"]}, "binding:vnic_type": "direct", "tags": ["a", "b"]}`,
		`{"external_gateway_info": {"network_id": "0b5d2a5e-0000-4000-8000-000000000000", "enable_snat": 0, "external_fixed_ips": [{"ip_address": "203.0.113.5"}]}, "routes": [{"destination": "10.2.0.0/16", "nexthop": "10.0.0.9"}]}`,
		`{"floating_network_id": "0b5d2a5e-0000-4000-8000-000000000000", "port_id": null, "fixed_ip_address": "10.0.0.5", "tenant_id": "a", "project_id": "a"}`,
		`{"security_group_id": "0b5d2a5e-0000-4000-8000-000000000000", "direction": "ingress", "ethertype": "ipv6", "protocol": 58, "port_range_min": "1", "remote_ip_prefix": "2001:db8::1/64"}`,
		`{"internal_port_id": "0b5d2a5e-0000-4000-8000-000000000000", "internal_ip_address": "10.0.0.5", "internal_port": 22, "external_port": 2222, "protocol": "tcp"}`,
		`{"network": 10, "port": -1, "subnet": null}`,
		`{"name": {"x": [1, 2]}, "tags": "a,b", "description": null, "mtu": 1e400}`,
	} {
		f.Add([]byte(seed))
	}
	admin := &identity.Context{ProjectID: "p", Roles: []string{identity.RoleAdmin}}
	member := &identity.Context{ProjectID: "p", Roles: []string{identity.RoleMember}}
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Body
		if json.Unmarshal(data, &b) != nil || b == nil {
			return
		}
		for _, d := range decoders {
			for _, c := range []*identity.Context{admin, member} {
				for _, post := range []bool{true, false} {
					var err error
					if d.attrs != nil {
						err = d.attrs.check(b, post, c, d.name)
					}
					if err == nil {
						err = d.decode(b, c, post)
					}
					var e *neutron.Error
					if err != nil && (!errors.As(err, &e) || (e.Class != neutron.BadRequest && e.Class != neutron.NotAuthorized)) {
						t.Fatalf("%s (post %v, admin %v) %s: %v (%#v): not the client's fault", d.name, post, c.IsAdmin(), data, err, e)
					}
				}
			}
		}
	})
}
