package neutron

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

var portAttrs = std.with(attrs{
	"name":                  {post: true, put: true},
	"network_id":            {post: true, required: true},
	"admin_state_up":        {post: true, put: true},
	"mac_address":           {post: true, put: true, adminPut: true},
	"fixed_ips":             {post: true, put: true},
	"device_id":             {post: true, put: true},
	"device_owner":          {post: true, put: true},
	"status":                {},
	"security_groups":       {post: true, put: true},
	"allowed_address_pairs": {post: true, put: true},
	"port_security_enabled": {post: true, put: true},
	"binding:host_id":       {post: true, put: true, adminSet: true, adminView: true},
	"binding:vnic_type":     {post: true, put: true},
	"binding:profile":       {post: true, put: true, adminSet: true, adminView: true},
	"binding:vif_type":      {adminView: true},
	"binding:vif_details":   {adminView: true},
	"ip_allocation":         {},
	"extra_dhcp_opts":       {post: true, put: true},
	"dns_name":              {post: true, put: true},
	"dns_assignment":        {},
	"trusted":               {post: true, put: true, adminSet: true, adminView: true},
	"qos_policy_id":         {post: true, put: true},
	"qos_network_policy_id": {},
	"trunk_details":         {},
})

// vnicTypes are the VNIC types Neutron's API accepts. Nagare binds normal
// ones (a tap device on the virtual switch) and direct/macvtap ones (SR-IOV
// virtual functions); the others fail to bind, as in Neutron when no
// mechanism driver supports them.
var vnicTypes = []string{"normal", "direct", "macvtap", "baremetal", "direct-physical", "virtio-forwarder",
	"smart-nic", "accelerator-direct", "accelerator-direct-physical", "remote-managed", "vdpa"}

func decodePort(b Body, _ *identity.Context, post bool) (neutron.PortRequest, error) {
	var r neutron.PortRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if post {
		if r.NetworkID, _, err = b.uuid("network_id"); err != nil {
			return r, err
		}
	}
	for _, f := range []struct {
		name string
		dst  **string
	}{{"device_id", &r.DeviceID}, {"device_owner", &r.DeviceOwner}, {"binding:host_id", &r.BindingHostID}} {
		if *f.dst, err = b.optStr(f.name, 255); err != nil {
			return r, err
		}
	}
	if r.AdminStateUp, err = b.optBool("admin_state_up"); err != nil {
		return r, err
	}
	if r.PortSecurityEnabled, err = b.optBool("port_security_enabled"); err != nil {
		return r, err
	}
	if r.VNICType, err = b.optStr("binding:vnic_type", 0); err != nil {
		return r, err
	} else if r.VNICType != nil && !slices.Contains(vnicTypes, *r.VNICType) {
		return r, invalid("binding:vnic_type", "'%s' is not in %s", *r.VNICType, pyList(vnicTypes))
	}
	if b.has("binding:profile") {
		var profile json.RawMessage // null and {} are no profile
		if !b.isNull("binding:profile") {
			var m map[string]any
			if err := json.Unmarshal(b["binding:profile"], &m); err != nil {
				return r, invalid("binding:profile", "'%s' is not a dictionary", rawText(b["binding:profile"]))
			}
			if len(m) > 0 {
				profile, _ = json.Marshal(m)
			}
		}
		r.Profile = &profile
	}
	if r.MACAddress, _, err = b.mac("mac_address"); err != nil {
		return r, err
	}
	if r.FixedIPs, err = parseFixedIPs(b); err != nil {
		return r, err
	}
	if groups, ok, err := b.uuidList("security_groups"); err != nil {
		return r, err
	} else if ok {
		r.SecurityGroups = &groups
	}
	if b.isNull("security_groups") {
		r.SecurityGroups = &[]string{}
	}
	if r.AllowedAddressPairs, err = parseAddressPairs(b); err != nil {
		return r, err
	}
	if r.ExtraDHCPOpts, err = parseExtraDHCPOpts(b); err != nil {
		return r, err
	}
	if r.DNSName, err = b.optStr("dns_name", 255); err != nil {
		return r, err
	} else if r.DNSName != nil {
		if err := neutron.ValidDNSName(*r.DNSName); err != nil {
			return r, err
		}
	}
	if r.Trusted, err = b.optBool("trusted"); err != nil {
		return r, err
	}
	if r.QoSPolicyID, err = optRef(b, "qos_policy_id"); err != nil {
		return r, err
	}
	return r, nil
}

// parseExtraDHCPOpts reads extra_dhcp_opts (Neutron's
// EXTRA_DHCP_OPT_KEY_SPECS): opt_name (one line, 1 to 64 characters),
// opt_value (at most 255, or null; empty only for router and
// classless-static-route), ip_version 4 (default) or 6. null is no change.
func parseExtraDHCPOpts(b Body) (*[]neutron.ExtraDHCPOptRequest, error) {
	if b.isNull("extra_dhcp_opts") {
		return nil, nil
	}
	raw, ok, err := b.objects("extra_dhcp_opts", "Invalid data format for extra DHCP options", "Unrecognized key '%s' in extra_dhcp_opts", "opt_name", "opt_value", "ip_version")
	if err != nil || !ok {
		return nil, err
	}
	out := []neutron.ExtraDHCPOptRequest{}
	for _, ob := range raw {
		var o neutron.ExtraDHCPOptRequest
		name, has, err := ob.str("opt_name", 64)
		if err != nil {
			return nil, invalid("extra_dhcp_opts", "opt_name: %s", strings.TrimPrefix(err.Error(), "Invalid input for opt_name. Reason: "))
		}
		if !has || strings.TrimSpace(name) == "" || strings.ContainsAny(name, "\r\n") {
			return nil, invalid("extra_dhcp_opts", "'%s' is not a valid opt_name: a non-empty one-line string is required", name)
		}
		o.Name = name
		if !ob.has("opt_value") {
			return nil, invalid("extra_dhcp_opts", "opt_value is required for option '%s'", name)
		}
		if !ob.isNull("opt_value") {
			v, _, err := ob.str("opt_value", 255)
			if err != nil {
				return nil, invalid("extra_dhcp_opts", "opt_value of '%s': %s", name, strings.TrimPrefix(err.Error(), "Invalid input for opt_value. Reason: "))
			}
			if strings.ContainsAny(v, "\r\n") || (v == "" && !slices.Contains([]string{"router", "classless-static-route"}, name)) {
				return nil, invalid("extra_dhcp_opts", "'%s' is not a valid opt_value for option '%s': a non-empty one-line string is required", v, name)
			}
			o.Value = &v
		}
		o.IPVersion = 4
		if ob.has("ip_version") {
			v, _, _, err := ob.integer("ip_version")
			if err != nil || (v != 4 && v != 6) {
				return nil, invalid("extra_dhcp_opts", "'%s' is not in [4, 6]", rawText(ob["ip_version"]))
			}
			o.IPVersion = v
		}
		out = append(out, o)
	}
	return &out, nil
}

// parseFixedIPs reads fixed_ips (a router gateway's external_fixed_ips
// too): a list of subnet_id, ip_address or both.
func parseFixedIPs(b Body) (*[]neutron.FixedIPRequest, error) {
	raw, ok, err := b.objects("fixed_ips", "Invalid data format for fixed IP", "Unexpected keys supplied: %s", "subnet_id", "ip_address")
	if err != nil || !ok {
		return nil, err
	}
	out := []neutron.FixedIPRequest{}
	for _, fb := range raw {
		var f neutron.FixedIPRequest
		if f.SubnetID, _, err = fb.uuid("subnet_id"); err != nil {
			return nil, invalid("fixed_ips", "'%s' is not a valid UUID", rawText(fb["subnet_id"]))
		}
		if f.IPAddress, _, err = fb.ip("ip_address"); err != nil {
			return nil, invalid("fixed_ips", "'%s' is not a valid IP address", rawText(fb["ip_address"]))
		}
		if f.SubnetID == "" && !f.IPAddress.IsValid() {
			return nil, invalid("fixed_ips", "Invalid data format for fixed IP: '%s'", mustJSON(fb))
		}
		for _, g := range out {
			if f.IPAddress.IsValid() && g.IPAddress == f.IPAddress {
				return nil, invalid("fixed_ips", "Duplicate IP address '%s'", f.IPAddress)
			}
		}
		out = append(out, f)
	}
	return &out, nil
}

func parseAddressPairs(b Body) (*[]neutron.AddressPair, error) {
	raw, ok, err := b.objects("allowed_address_pairs", "Allowed address pairs must be a list", "Unrecognized attribute(s) '%s'", "ip_address", "mac_address")
	if err != nil || !ok {
		return nil, err
	}
	out := []neutron.AddressPair{}
	for _, pb := range raw {
		s, has, err := pb.str("ip_address", 0)
		if err != nil || !has {
			return nil, neutron.NewError(neutron.BadRequest, "AllowedAddressPairsMissingIP", "AllowedAddressPair must contain ip_address")
		}
		pfx, err := parsePrefixLoose(s)
		if err != nil {
			return nil, invalid("allowed_address_pairs", "'%s' is not a valid IP address", s)
		}
		ap := neutron.AddressPair{IPAddress: pfx}
		if pb.has("mac_address") && !pb.isNull("mac_address") {
			if ap.MACAddress, _, err = pb.mac("mac_address"); err != nil {
				return nil, err
			}
		}
		if slices.Contains(out, ap) {
			return nil, neutron.NewError(neutron.BadRequest, "DuplicateAddressPairInRequest", "Request contains duplicate address pair: mac_address %s ip_address %s.", ap.MACAddress, s)
		}
		out = append(out, ap)
	}
	return &out, nil
}

func viewPort(v *viewer, x *neutron.Port) map[string]any {
	m := stdView(&x.Std, true)
	pairs := make([]map[string]string, len(x.AllowedAddressPairs))
	for i, p := range x.AllowedAddressPairs {
		ip := p.IPAddress.String()
		if p.IPAddress.IsSingleIP() {
			ip = p.IPAddress.Addr().String()
		}
		mac := p.MACAddress
		if mac.IsZero() {
			mac = x.MACAddress
		}
		pairs[i] = map[string]string{"ip_address": ip, "mac_address": mac.String()}
	}
	groups := x.SecurityGroups
	if groups == nil {
		groups = []string{}
	}
	m["network_id"], m["mac_address"], m["admin_state_up"], m["status"] = x.NetworkID, x.MACAddress.String(), x.AdminStateUp, x.Status
	m["device_id"], m["device_owner"] = x.DeviceID, x.DeviceOwner
	m["fixed_ips"], m["allowed_address_pairs"], m["security_groups"] = fixedIPsView(x.FixedIPs), pairs, groups
	m["port_security_enabled"] = x.PortSecurityEnabled
	m["binding:vnic_type"] = x.VNICType
	m["ip_allocation"] = "immediate"
	opts := make([]map[string]any, len(x.ExtraDHCPOpts))
	for i, o := range x.ExtraDHCPOpts {
		opts[i] = map[string]any{"opt_name": o.Name, "opt_value": o.Value, "ip_version": o.IPVersion}
	}
	m["extra_dhcp_opts"] = opts
	dns := []map[string]string{}
	for _, d := range x.DNSAssignments() {
		dns = append(dns, map[string]string{"hostname": d.Hostname, "ip_address": d.IPAddress.String(), "fqdn": d.FQDN})
	}
	m["dns_name"], m["dns_assignment"] = x.DNSName, dns
	m["qos_policy_id"], m["qos_network_policy_id"] = strOrNil(x.QoSPolicyID), nil
	if t := v.TrunkOf(x.ID); t != nil {
		m["trunk_details"] = map[string]any{"trunk_id": t.ID, "sub_ports": viewSubports(v, t.ID)}
	}
	if n := v.Network(x.NetworkID); n != nil {
		m["qos_network_policy_id"] = strOrNil(n.QoSPolicyID)
	}
	if v.admin {
		profile := map[string]any{}
		if len(x.Profile) > 0 {
			_ = json.Unmarshal(x.Profile, &profile) // stored by decodePort from a valid object
		}
		m["binding:host_id"] = x.BindingHostID
		m["binding:profile"] = profile
		m["binding:vif_type"] = x.VIFType
		m["binding:vif_details"] = vifDetails(x, v.Network(x.NetworkID))
		m["trusted"] = nil
		if x.Trusted != nil {
			m["trusted"] = *x.Trusted
		}
	}
	return m
}

// vifDetails is binding:vif_details for a VIF type.
func vifDetails(p *neutron.Port, n *neutron.Network) map[string]any {
	switch p.VIFType {
	case "tap":
		return map[string]any{"port_filter": p.Filtered(), "connectivity": "l2"}
	case "hw_veb":
		vlan := "0"
		if n != nil && n.NetworkType == "vlan" {
			vlan = strconv.Itoa(n.SegmentationID)
		}
		return map[string]any{"port_filter": false, "vlan": vlan, "connectivity": "l2"}
	}
	return map[string]any{}
}
