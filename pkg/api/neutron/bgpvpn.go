package neutron

import (
	"context"
	"net/http"
	"regexp"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
)

// BGP VPNs (bgpvpn, bgpvpn-vni, bgpvpn-routes-control) and their network,
// router and port associations.

var bgpvpnAttrs = attrs{
	"id": {}, "tenant_id": {post: true}, "project_id": {post: true},
	"name":                 {post: true, put: true},
	"type":                 {post: true},
	"route_targets":        {post: true, put: true},
	"import_targets":       {post: true, put: true},
	"export_targets":       {post: true, put: true},
	"route_distinguishers": {post: true, put: true},
	"vni":                  {post: true, put: true},
	"local_pref":           {post: true, put: true},
	"networks":             {},
	"routers":              {},
	"ports":                {},
}

// Route targets and distinguishers: neutron-lib's RTRD_REGEX (RFC 4364
// types 0, 1 and 2).
const (
	uint16RE = `(6553[0-5]|655[0-2]\d|65[0-4]\d{2}|6[0-4]\d{3}|[1-5]\d{4}|[1-9]\d{0,3}|0)`
	uint32RE = `(429496729[0-5]|42949672[0-8]\d|4294967[01]\d{2}|429496[0-6]\d{3}|42949[0-5]\d{4}|4294[0-8]\d{5}|429[0-3]\d{6}|42[0-8]\d{7}|4[01]\d{8}|[1-3]\d{9}|[1-9]\d{0,8}|0)`
	ip4RE    = `((25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)`
)

var rtrd = regexp.MustCompile(`^(` + uint16RE + `:` + uint32RE + `|` + ip4RE + `:` + uint16RE + `|` + uint32RE + `:` + uint16RE + `)$`)

func routeTargets(b Body, name string) (*[]string, error) {
	if !b.has(name) {
		return nil, nil
	}
	xs := []string{}
	if !b.isNull(name) {
		var err error
		if xs, _, err = b.stringList(name); err != nil {
			return nil, err
		}
	}
	for _, x := range xs {
		if !rtrd.MatchString(x) {
			return nil, invalid(name, "'%s' does not match a route target or distinguisher (ASN:NN or IP:NN)", x)
		}
	}
	return &xs, nil
}

// vpnRoutes reads a port association's routes (bgpvpn-routes-control's
// ROUTE_SPECS): {"type": "prefix", "prefix"} or {"type": "bgpvpn",
// "bgpvpn_id"}, each with an optional local_pref.
func vpnRoutes(b Body) ([]neutron.BGPVPNRoute, error) {
	raw, _, err := b.objects("routes", "Invalid data format for routes", "Unrecognized key '%s' in routes", "type", "prefix", "bgpvpn_id", "local_pref")
	if err != nil {
		return nil, err
	}
	out := []neutron.BGPVPNRoute{}
	for _, rb := range raw {
		var rt neutron.BGPVPNRoute
		t, _, err := rb.str("type", 0)
		if err != nil {
			return nil, err
		}
		rt.Type = t
		switch t {
		case "prefix":
			p, ok, err := rb.cidr("prefix")
			if err != nil || !ok || !p.IsValid() || rb.has("bgpvpn_id") {
				return nil, invalid("routes", "a prefix route needs a prefix (a subnet) and nothing else: '%s'", mustJSON(rb))
			}
			rt.Prefix = p
		case "bgpvpn":
			id, ok, err := rb.uuid("bgpvpn_id")
			if err != nil || !ok || rb.has("prefix") {
				return nil, invalid("routes", "a bgpvpn route needs a bgpvpn_id and nothing else: '%s'", mustJSON(rb))
			}
			rt.BGPVPNID = id
		default:
			return nil, invalid("routes", "'%s' is not in ['prefix', 'bgpvpn']", t)
		}
		if n, null, ok, err := rb.integer("local_pref"); err != nil {
			return nil, err
		} else if ok && !null {
			if n < 0 || int64(n) > neutron.MaxASN {
				return nil, invalid("routes", "local_pref '%d' is not in range 0 through %d", n, neutron.MaxASN)
			}
			v := int64(n)
			rt.LocalPref = &v
		}
		out = append(out, rt)
	}
	return out, nil
}

func decodeBGPVPN(b Body, _ *identity.Context, post bool) (neutron.BGPVPNRequest, error) {
	var r neutron.BGPVPNRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if post {
		r.Type = "l3"
		if v, ok, err := b.str("type", 0); err != nil {
			return r, err
		} else if ok {
			if v != "l2" && v != "l3" {
				return r, invalid("type", "'%s' is not in ['l2', 'l3']", v)
			}
			r.Type = v
		}
	}
	for _, f := range []struct {
		name string
		dst  **[]string
	}{{"route_targets", &r.RouteTargets}, {"import_targets", &r.ImportTargets}, {"export_targets", &r.ExportTargets},
		{"route_distinguishers", &r.RouteDistinguishers}} {
		if *f.dst, err = routeTargets(b, f.name); err != nil {
			return r, err
		}
	}
	if n, null, ok, err := b.integer("vni"); err != nil {
		return r, err
	} else if ok && !null {
		if n < 1 || n > 1<<24-1 {
			return r, invalid("vni", "'%d' is not in range 1 through 16777215", n)
		}
		r.VNI = &n
	}
	if n, null, ok, err := b.integer("local_pref"); err != nil {
		return r, err
	} else if ok {
		var p *int64
		if !null {
			if n < 0 || int64(n) > neutron.MaxASN {
				return r, invalid("local_pref", "'%d' is not in range 0 through %d", n, neutron.MaxASN)
			}
			v := int64(n)
			p = &v
		}
		r.LocalPref = &p
	}
	return r, nil
}

func viewBGPVPN(v *viewer, x *neutron.BGPVPN) map[string]any {
	var pref any
	if x.LocalPref != nil {
		pref = *x.LocalPref
	}
	var vni any
	if x.VNI != 0 {
		vni = x.VNI
	}
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "type": x.Type,
		"route_targets": nonNil(x.RouteTargets), "import_targets": nonNil(x.ImportTargets), "export_targets": nonNil(x.ExportTargets),
		"route_distinguishers": nonNil(x.RouteDistinguishers), "vni": vni, "local_pref": pref,
		"networks": v.BGPVPNAssociations(x.ID, "network"), "routers": v.BGPVPNAssociations(x.ID, "router"), "ports": v.BGPVPNAssociations(x.ID, "port")}
}

// registerBGPVPNAssociations adds the three association collections.
func (a *API) registerBGPVPNAssociations(mux *http.ServeMux) {
	for _, kind := range []string{"network", "router", "port"} {
		at := attrs{"id": {}, "tenant_id": {post: true}, "project_id": {post: true}, kind + "_id": {post: true, required: true}}
		switch kind {
		case "router":
			at["advertise_extra_routes"] = attr{post: true, put: true}
		case "port":
			at["advertise_fixed_ips"], at["routes"] = attr{post: true, put: true}, attr{post: true, put: true}
		}
		decode := func(b Body, post bool) (neutron.BGPVPNAssocRequest, error) {
			r := neutron.BGPVPNAssocRequest{Kind: kind}
			var err error
			if post {
				if r.TargetID, _, err = b.uuid(kind + "_id"); err != nil {
					return r, err
				}
			}
			if r.AdvertiseExtraRoutes, err = b.optBool("advertise_extra_routes"); err != nil {
				return r, err
			}
			if r.AdvertiseFixedIPs, err = b.optBool("advertise_fixed_ips"); err != nil {
				return r, err
			}
			if b.has("routes") {
				routes, err := vpnRoutes(b)
				if err != nil {
					return r, err
				}
				r.Routes = &routes
			}
			return r, nil
		}
		a.registerChild(mux, &child{parent: "bgpvpn/bgpvpns", singular: kind + "_association", plural: kind + "_associations",
			kind: neutron.BGPVPNAssocKind, attrs: at,
			view: func(o model.Object) map[string]any {
				x := o.(*neutron.BGPVPNAssoc)
				m := map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, kind + "_id": map[string]string{
					"network": x.NetworkID, "router": x.RouterID, "port": x.PortID}[kind]}
				switch kind {
				case "router":
					m["advertise_extra_routes"] = x.AdvertiseExtraRoutes
				case "port":
					routes := []map[string]any{}
					for _, rt := range x.Routes {
						rm := map[string]any{"type": rt.Type}
						if rt.Type == "prefix" {
							rm["prefix"] = rt.Prefix.String()
						} else {
							rm["bgpvpn_id"] = rt.BGPVPNID
						}
						if rt.LocalPref != nil {
							rm["local_pref"] = *rt.LocalPref
						}
						routes = append(routes, rm)
					}
					m["advertise_fixed_ips"], m["routes"] = x.AdvertiseFixedIPs, routes
				}
				return m
			},
			list: func(ctx context.Context, c *identity.Context, p string) ([]model.Object, error) {
				return objects(a.svc.ListBGPVPNAssocs(ctx, c, p, kind))
			},
			get: func(ctx context.Context, c *identity.Context, p, id string) (model.Object, error) {
				return object(a.svc.GetBGPVPNAssoc(ctx, c, p, kind, id))
			},
			create: func(ctx context.Context, c *identity.Context, p string, b Body) (model.Object, error) {
				r, err := decode(b, true)
				if err != nil {
					return nil, err
				}
				return object(a.svc.CreateBGPVPNAssoc(ctx, c, p, r))
			},
			update: func(ctx context.Context, c *identity.Context, p, id string, b Body) (model.Object, error) {
				r, err := decode(b, false)
				if err != nil {
					return nil, err
				}
				return object(a.svc.UpdateBGPVPNAssoc(ctx, c, p, kind, id, r))
			},
			delete: func(ctx context.Context, c *identity.Context, p, id string) error {
				return a.svc.DeleteBGPVPNAssoc(ctx, c, p, kind, id)
			},
		})
	}
}
