package neutron

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

var groupAttrs = std.with(attrs{
	"name":                 {post: true, put: true},
	"stateful":             {post: true, put: true},
	"security_group_rules": {},
	"shared":               {},
})

var ruleAttrs = std.with(attrs{
	"security_group_id":       {post: true, required: true},
	"direction":               {post: true, required: true},
	"ethertype":               {post: true},
	"protocol":                {post: true},
	"port_range_min":          {post: true},
	"port_range_max":          {post: true},
	"remote_ip_prefix":        {post: true},
	"remote_group_id":         {post: true},
	"remote_address_group_id": {post: true},
	"normalized_cidr":         {},
	"belongs_to_default_sg":   {},
})

func init() { delete(ruleAttrs, "tags") } // Neutron does not tag rules' creation

func decodeGroup(b Body, _ *identity.Context, _ bool) (neutron.SecurityGroupRequest, error) {
	var r neutron.SecurityGroupRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	r.Stateful, err = b.optBool("stateful")
	return r, err
}

func decodeRule(b Body, _ *identity.Context, _ bool) (neutron.SecurityGroupRuleRequest, error) {
	var r neutron.SecurityGroupRuleRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if r.SecurityGroupID, _, err = b.uuid("security_group_id"); err != nil {
		return r, err
	}
	dir, _, err := b.str("direction", 0)
	if err != nil {
		return r, err
	}
	if dir != "ingress" && dir != "egress" {
		return r, invalid("direction", "'%s' is not in ['ingress', 'egress']", dir)
	}
	r.Direction = dir
	if v, ok, err := b.str("ethertype", 0); err != nil {
		return r, err
	} else if ok {
		switch strings.ToLower(v) {
		case "ipv4":
			r.Ethertype = "IPv4"
		case "ipv6":
			r.Ethertype = "IPv6"
		default:
			return r, invalid("ethertype", "'%s' is not in ['IPv4', 'IPv6']", v)
		}
	}
	if b.has("protocol") && !b.isNull("protocol") {
		// A name in any case, or a number (as a JSON number or a string).
		var x any
		if _, err := b.raw("protocol", &x, "not a protocol"); err != nil {
			return r, err
		}
		r.Protocol = strings.ToLower(fmt.Sprint(x))
		if f, ok := x.(float64); ok {
			r.Protocol = strconv.Itoa(int(f))
		}
	}
	for _, f := range []struct {
		name string
		dst  **int
	}{{"port_range_min", &r.PortRangeMin}, {"port_range_max", &r.PortRangeMax}} {
		n, null, ok, err := b.integer(f.name)
		if err != nil {
			return r, err
		}
		if ok && !null {
			*f.dst = &n
		}
	}
	if p, ok, err := b.cidr("remote_ip_prefix"); err != nil {
		// Neutron keeps a prefix with host bits as given (normalized_cidr
		// shows it masked).
		s, _, _ := b.str("remote_ip_prefix", 0)
		pp, perr := netip.ParsePrefix(strings.TrimSpace(s))
		if perr != nil {
			return r, err
		}
		r.RemoteIPPrefix = pp
	} else if ok {
		r.RemoteIPPrefix = p
	}
	if r.RemoteGroupID, _, err = b.uuid("remote_group_id"); err != nil {
		return r, err
	}
	if ag, err := optRef(b, "remote_address_group_id"); err != nil {
		return r, err
	} else if ag != nil {
		r.RemoteAddressGroupID = *ag
	}
	return r, nil
}

func viewGroup(v *viewer, x *neutron.SecurityGroup) map[string]any {
	m := stdView(&x.Std, true)
	m["stateful"] = x.Stateful
	m["shared"] = !v.admin && x.ProjectID != v.Caller().ProjectID && v.Granted("security_group", x.ID, neutron.AccessShared)
	rules := []map[string]any{}
	for _, r := range v.GroupRules(x.ID) {
		rules = append(rules, viewRule(v, r))
	}
	m["security_group_rules"] = rules
	return m
}

func viewRule(v *viewer, x *neutron.SecurityGroupRule) map[string]any {
	m := stdView(&x.Std, false)
	m["security_group_id"], m["direction"], m["ethertype"] = x.SecurityGroupID, x.Direction, x.Ethertype
	m["protocol"] = strOrNil(x.Protocol)
	m["port_range_min"], m["port_range_max"] = intOrNil(x.PortRangeMin), intOrNil(x.PortRangeMax)
	m["remote_ip_prefix"], m["normalized_cidr"] = nil, nil
	if x.RemoteIPPrefix.IsValid() {
		m["remote_ip_prefix"], m["normalized_cidr"] = x.RemoteIPPrefix.String(), x.RemoteIPPrefix.Masked().String()
	}
	m["remote_group_id"] = strOrNil(x.RemoteGroupID)
	m["remote_address_group_id"] = strOrNil(x.RemoteAddressGroupID)
	g := v.SecurityGroup(x.SecurityGroupID)
	m["belongs_to_default_sg"] = g != nil && g.IsDefault
	return m
}
