package neutron

import (
	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

var floatingIPAttrs = std.with(attrs{
	"floating_network_id": {post: true, required: true},
	"floating_ip_address": {post: true, adminSet: true},
	"subnet_id":           {post: true},
	"port_id":             {post: true, put: true},
	"fixed_ip_address":    {post: true, put: true},
	"router_id":           {},
	"status":              {},
	"port_details":        {},
	"port_forwardings":    {},
	"dns_name":            {post: true},
	"dns_domain":          {post: true},
})

func decodeFloatingIP(b Body, _ *identity.Context, post bool) (neutron.FloatingIPRequest, error) {
	var r neutron.FloatingIPRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if post {
		if r.FloatingNetworkID, _, err = b.uuid("floating_network_id"); err != nil {
			return r, err
		}
		if r.FloatingIPAddress, _, err = b.ip("floating_ip_address"); err != nil {
			return r, err
		}
		if r.SubnetID, _, err = b.uuid("subnet_id"); err != nil {
			return r, err
		}
		if r.DNSName, _, err = b.str("dns_name", 255); err != nil {
			return r, err
		}
		if err := neutron.ValidFIPDNSName(r.DNSName); err != nil {
			return r, err
		}
		if r.DNSDomain, _, err = b.str("dns_domain", 255); err != nil {
			return r, err
		}
		if err := neutron.ValidDNSDomain(r.DNSDomain); err != nil {
			return r, err
		}
	}
	if b.has("port_id") {
		id := "" // null: disassociate
		if !b.isNull("port_id") {
			if id, _, err = b.uuid("port_id"); err != nil {
				return r, err
			}
		}
		r.PortID = &id
	}
	r.FixedIPAddress, _, err = b.ip("fixed_ip_address")
	return r, err
}

func viewFloatingIP(v *viewer, x *neutron.FloatingIP) map[string]any {
	m := stdView(&x.Std, false)
	m["floating_network_id"], m["floating_ip_address"] = x.FloatingNetworkID, x.FloatingIPAddress.String()
	m["router_id"], m["port_id"] = strOrNil(x.RouterID), strOrNil(x.PortID)
	m["fixed_ip_address"] = addrOrNil(x.FixedIPAddress)
	m["status"] = x.Status
	m["port_details"] = portDetails(v, x.PortID)
	m["dns_name"], m["dns_domain"] = x.DNSName, x.DNSDomain
	return m
}

// portDetails is the fip-port-details extension's summary of the port.
func portDetails(v *viewer, id string) any {
	if id == "" {
		return nil
	}
	p := v.Port(id)
	if p == nil {
		return nil
	}
	return map[string]any{"name": p.Name, "network_id": p.NetworkID, "mac_address": p.MACAddress.String(),
		"admin_state_up": p.AdminStateUp, "status": p.Status, "device_id": p.DeviceID, "device_owner": p.DeviceOwner}
}
