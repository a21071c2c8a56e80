package neutron

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

var subnetAttrs = std.with(attrs{
	"name":                   {post: true, put: true},
	"network_id":             {post: true, required: true},
	"ip_version":             {post: true, required: true},
	"cidr":                   {post: true},
	"prefixlen":              {post: true},
	"gateway_ip":             {post: true, put: true},
	"allocation_pools":       {post: true, put: true},
	"dns_nameservers":        {post: true, put: true},
	"host_routes":            {post: true, put: true},
	"enable_dhcp":            {post: true, put: true},
	"ipv6_ra_mode":           {post: true},
	"ipv6_address_mode":      {post: true},
	"subnetpool_id":          {post: true},
	"use_default_subnetpool": {post: true},
	"service_types":          {post: true, put: true},
	"segment_id":             {post: true, put: true},
	"dns_publish_fixed_ip":   {},
})

var ipv6Modes = []string{"dhcpv6-stateful", "dhcpv6-stateless", "slaac"}

func decodeSubnet(b Body, _ *identity.Context, post bool) (neutron.SubnetRequest, error) {
	var r neutron.SubnetRequest
	var err error
	if post {
		if err := decodeNewSubnet(&r, b); err != nil {
			return r, err
		}
	}
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if r.EnableDHCP, err = b.optBool("enable_dhcp"); err != nil {
		return r, err
	}
	if b.has("dns_nameservers") {
		var raw []string
		if _, err := b.raw("dns_nameservers", &raw, "not a list of nameservers"); err != nil {
			return r, err
		}
		dns := []netip.Addr{}
		for _, x := range raw {
			a, err := parseIP(x)
			if err != nil {
				return r, invalid("dns_nameservers", "'%s' is not a valid nameserver", x)
			}
			if slices.Contains(dns, a) {
				return r, invalid("dns_nameservers", "Duplicate nameserver '%s'", x)
			}
			dns = append(dns, a)
		}
		r.DNSNameservers = &dns
	}
	if b.has("host_routes") {
		routes, err := parseRoutes(b, "host_routes")
		if err != nil {
			return r, err
		}
		r.HostRoutes = &routes
	}
	if b.has("service_types") {
		types, err := decodeServiceTypes(b)
		if err != nil {
			return r, err
		}
		r.ServiceTypes = &types
	}
	if b.has("segment_id") && !b.isNull("segment_id") {
		return r, neutron.InvalidInput("routed networks are not implemented: segment_id must be null")
	}
	if b.has("gateway_ip") {
		gw, _, err := b.ip("gateway_ip") // null: the zero Addr, no gateway
		if err != nil {
			return r, err
		}
		r.GatewayIP = &gw
	}
	if b.has("allocation_pools") {
		pools, err := parsePools(b, "allocation_pools")
		if err != nil {
			return r, err
		}
		r.AllocationPools = &pools
	}
	return r, nil
}

// decodeServiceTypes reads service_types: device owners (Neutron's
// _validate_subnet_service_types: strings that start with "network:" or
// "compute:"), without duplicates.
func decodeServiceTypes(b Body) ([]string, error) {
	var raw []any
	if _, err := b.raw("service_types", &raw, "not a list of service types"); err != nil {
		return nil, err
	}
	out := []string{}
	for _, x := range raw {
		st, ok := x.(string)
		if !ok {
			return nil, invalid("service_types", "'%v' is not a string", x)
		}
		if len(st) > 255 {
			return nil, invalid("service_types", "'%s' exceeds maximum length of 255", st)
		}
		if !strings.HasPrefix(st, "network:") && !strings.HasPrefix(st, "compute:") {
			return nil, neutron.NewError(neutron.BadRequest, "InvalidSubnetServiceType", "Subnet service type %s does not correspond to a valid device owner.", st)
		}
		if !slices.Contains(out, st) {
			out = append(out, st)
		}
	}
	return out, nil
}

// decodeNewSubnet reads what only a create names: the network, the IP
// version, the prefix (subnet pools are not implemented) and the IPv6
// modes.
func decodeNewSubnet(r *neutron.SubnetRequest, b Body) error {
	var err error
	if r.NetworkID, _, err = b.uuid("network_id"); err != nil {
		return err
	}
	ver, _, _, err := b.integer("ip_version")
	if err != nil {
		return err
	}
	if ver != 4 && ver != 6 {
		return invalid("ip_version", "'%s' is not in [4, 6]", rawText(b["ip_version"]))
	}
	r.IPVersion = ver
	if b.has("subnetpool_id") && !b.isNull("subnetpool_id") {
		if r.SubnetPoolID, _, err = b.uuid("subnetpool_id"); err != nil {
			return err
		}
	}
	if r.UseDefaultPool, _, err = b.boolean("use_default_subnetpool"); err != nil {
		return err
	}
	if r.UseDefaultPool && r.SubnetPoolID != "" {
		return neutron.BadResourceRequest("subnets", "subnetpool_id and use_default_subnetpool cannot both be specified")
	}
	if n, null, ok, err := b.integer("prefixlen"); err != nil {
		return err
	} else if ok && !null {
		if n < 0 || n > 128 {
			return invalid("prefixlen", "'%d' is not in range 0 through 128", n)
		}
		r.PrefixLen = n
	}
	if r.CIDR, _, err = b.cidr("cidr"); err != nil {
		return err
	}
	if r.CIDR.IsValid() && r.PrefixLen != 0 {
		return neutron.BadResourceRequest("subnets", "cidr and prefixlen must not be supplied together")
	}
	for _, m := range []struct {
		name string
		dst  *string
	}{{"ipv6_ra_mode", &r.IPv6RAMode}, {"ipv6_address_mode", &r.IPv6AddressMode}} {
		if b.isNull(m.name) {
			continue
		}
		v, ok, err := b.str(m.name, 0)
		if err != nil {
			return err
		}
		if ok && !slices.Contains(ipv6Modes, v) {
			return invalid(m.name, "'%s' is not in %s", v, pyList(ipv6Modes))
		}
		*m.dst = v
	}
	return nil
}

// parseRoutes reads a list of {"destination", "nexthop"} without
// duplicates (host_routes, a router's routes); null is no routes.
func parseRoutes(b Body, attr string) ([]neutron.Route, error) {
	var raw []map[string]json.RawMessage
	if _, err := b.raw(attr, &raw, "Invalid data format for hostroute"); err != nil {
		return nil, err
	}
	var out []neutron.Route
	for _, m := range raw {
		rt, err := parseRoute(Body(m), attr)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, rt) {
			return nil, invalid(attr, "Duplicate hostroute '%s'", mustJSON(map[string]string{"destination": rt.Destination.String(), "nexthop": rt.NextHop.String()}))
		}
		out = append(out, rt)
	}
	return out, nil
}

// parseRoute reads {"destination", "nexthop"}.
func parseRoute(b Body, attr string) (neutron.Route, error) {
	bad := invalid(attr, "Invalid data format for hostroute: '%s'", mustJSON(b))
	if len(b) != 2 || !b.has("destination") || !b.has("nexthop") {
		return neutron.Route{}, bad
	}
	ds, _, err := b.str("destination", 0)
	if err != nil {
		return neutron.Route{}, bad
	}
	d, err := parseCIDR(ds)
	if err != nil {
		return neutron.Route{}, invalid(attr, "%s", err.Error())
	}
	nh, _, err := b.ip("nexthop")
	if err != nil || !nh.IsValid() {
		return neutron.Route{}, bad
	}
	return neutron.Route{Destination: d, NextHop: nh}, nil
}

// parsePools reads allocation_pools: [] is no pools, null is the default
// (a nil slice).
func parsePools(b Body, name string) ([]neutron.Pool, error) {
	if b.isNull(name) {
		return nil, nil
	}
	var raw []map[string]json.RawMessage
	if _, err := b.raw(name, &raw, "Invalid data format for IP pool"); err != nil {
		return nil, err
	}
	out := []neutron.Pool{}
	for _, m := range raw {
		pb := Body(m)
		s, _, err1 := pb.ip("start")
		e, _, err2 := pb.ip("end")
		if err1 != nil || err2 != nil || !s.IsValid() || !e.IsValid() || len(m) != 2 {
			return nil, invalid(name, "Invalid data format for IP pool: '%s'", mustJSON(m))
		}
		out = append(out, neutron.Pool{Start: s, End: e})
	}
	return out, nil
}

func viewSubnet(_ *viewer, x *neutron.Subnet) map[string]any {
	m := stdView(&x.Std, true)
	pools := make([]map[string]string, len(x.AllocationPools))
	for i, p := range x.AllocationPools {
		pools[i] = map[string]string{"start": p.Start.String(), "end": p.End.String()}
	}
	dns := make([]string, len(x.DNSNameservers))
	for i, a := range x.DNSNameservers {
		dns[i] = a.String()
	}
	m["network_id"], m["ip_version"], m["cidr"] = x.NetworkID, x.IPVersion, x.CIDR.String()
	m["gateway_ip"] = addrOrNil(x.GatewayIP)
	m["allocation_pools"], m["dns_nameservers"], m["host_routes"] = pools, dns, routesView(x.HostRoutes)
	m["enable_dhcp"] = x.EnableDHCP
	m["ipv6_ra_mode"], m["ipv6_address_mode"] = strOrNil(x.IPv6RAMode), strOrNil(x.IPv6AddressMode)
	m["subnetpool_id"], m["segment_id"] = strOrNil(x.SubnetPoolID), nil
	m["service_types"] = nonNil(x.ServiceTypes)
	return m
}
