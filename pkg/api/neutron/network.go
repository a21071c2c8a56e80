package neutron

import (
	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

var networkAttrs = std.with(attrs{
	"name":                      {post: true, put: true},
	"admin_state_up":            {post: true, put: true},
	"status":                    {},
	"subnets":                   {},
	"shared":                    {post: true, put: true, adminSet: true},
	"router:external":           {post: true, put: true, adminSet: true},
	"mtu":                       {post: true, put: true},
	"port_security_enabled":     {post: true, put: true},
	"provider:network_type":     {post: true, put: true, adminSet: true, adminView: true},
	"provider:physical_network": {post: true, put: true, adminSet: true, adminView: true},
	"provider:segmentation_id":  {post: true, put: true, adminSet: true, adminView: true},
	"segments":                  {post: true, adminSet: true, adminView: true},
	"availability_zone_hints":   {post: true},
	"availability_zones":        {},
	"ipv4_address_scope":        {},
	"ipv6_address_scope":        {},
	"l2_adjacency":              {},
	"is_default":                {},
	"dns_domain":                {post: true, put: true},
	"vlan_transparent":          {post: true},
	"qos_policy_id":             {post: true, put: true},
})

var providerAttrs = []string{"provider:network_type", "provider:physical_network", "provider:segmentation_id"}

func decodeNetwork(b Body, _ *identity.Context, _ bool) (neutron.NetworkRequest, error) {
	var r neutron.NetworkRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	for _, f := range []struct {
		name string
		dst  **bool
	}{{"admin_state_up", &r.AdminStateUp}, {"shared", &r.Shared}, {"router:external", &r.External}, {"port_security_enabled", &r.PortSecurityEnabled}} {
		if *f.dst, err = b.optBool(f.name); err != nil {
			return r, err
		}
	}
	if err := b.noneOrEmpty("availability_zone_hints", "availability zones are not implemented: availability_zone_hints must be empty"); err != nil {
		return r, err
	}
	if r.Provider, err = decodeSegment(b); err != nil {
		return r, err
	}
	if r.DNSDomain, err = b.optStr("dns_domain", 255); err != nil {
		return r, err
	} else if r.DNSDomain != nil {
		if err := neutron.ValidDNSDomain(*r.DNSDomain); err != nil {
			return r, err
		}
	}
	if r.VLANTransparent, err = b.optBool("vlan_transparent"); err != nil {
		return r, err
	}
	if r.QoSPolicyID, err = optRef(b, "qos_policy_id"); err != nil {
		return r, err
	}
	if mtu, null, has, err := b.integer("mtu"); err != nil {
		return r, err
	} else if has && !null {
		r.MTU = &mtu
	}
	return r, nil
}

// decodeSegment reads the provider attributes, or the multi-provider form
// with one segment (gophercloud's provider extension sends it); nil when
// the body names neither.
func decodeSegment(b Body) (*neutron.Segment, error) {
	if b.has("segments") {
		var segs []Body
		if _, err := b.raw("segments", &segs, "not a list of segments"); err != nil {
			return nil, err
		}
		for _, k := range providerAttrs {
			if b.has(k) {
				return nil, neutron.InvalidInput("Segments and provider values cannot both be set.")
			}
		}
		if len(segs) != 1 {
			return nil, neutron.InvalidInput("networks of several segments are not implemented: give one segment")
		}
		b = segs[0]
	} else if !b.has(providerAttrs[0]) && !b.has(providerAttrs[1]) && !b.has(providerAttrs[2]) {
		return nil, nil
	}
	seg := &neutron.Segment{}
	var err error
	if seg.NetworkType, err = b.optStr("provider:network_type", 0); err != nil {
		return nil, err
	}
	if seg.PhysicalNetwork, err = b.optStr("provider:physical_network", 64); err != nil {
		return nil, err
	}
	id, null, has, err := b.integer("provider:segmentation_id")
	if err != nil {
		return nil, err
	}
	// 0 means none, as Python's truthiness makes it in ML2's type drivers
	// (gophercloud sends it for flat segments).
	if has && !null && id != 0 {
		seg.SegmentationID = &id
	}
	return seg, nil
}

func viewNetwork(v *viewer, x *neutron.Network) map[string]any {
	m := stdView(&x.Std, true)
	m["admin_state_up"] = x.AdminStateUp
	m["status"] = "ACTIVE"
	m["subnets"] = v.SubnetIDs(x.ID)
	m["shared"] = x.Shared || (!v.admin && v.Granted("network", x.ID, neutron.AccessShared) && x.ProjectID != v.Caller().ProjectID)
	m["router:external"] = x.External
	m["mtu"] = x.MTU
	m["port_security_enabled"] = x.PortSecurityEnabled
	m["availability_zone_hints"] = []string{}
	m["availability_zones"] = []string{}
	m["ipv4_address_scope"], m["ipv6_address_scope"] = strOrNil(v.AddressScope(x.ID, 4)), strOrNil(v.AddressScope(x.ID, 6))
	m["qos_policy_id"] = strOrNil(x.QoSPolicyID)
	m["l2_adjacency"] = true
	m["dns_domain"] = x.DNSDomain
	m["vlan_transparent"] = x.VLANTransparent
	if x.External {
		m["is_default"] = false
	}
	if v.admin {
		m["provider:network_type"] = x.NetworkType
		m["provider:physical_network"] = strOrNil(x.PhysicalNetwork)
		if x.NetworkType == "flat" {
			m["provider:segmentation_id"] = nil
		} else {
			m["provider:segmentation_id"] = x.SegmentationID
		}
	}
	return m
}
