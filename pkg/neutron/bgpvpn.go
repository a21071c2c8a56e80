package neutron

import (
	"context"
	"errors"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// BGP VPNs (bgpvpn, bgpvpn-vni, bgpvpn-routes-control): route targets and
// the networks, routers and ports whose prefixes a BGP VPN imports and
// exports. They are kept and validated here; the exchange with the
// provider's routers is the gateways' BGP (issue 2.4).

// BGPVPN is a BGP VPN.
type BGPVPN struct {
	Std
	Type                string   `json:"type"`
	RouteTargets        []string `json:"route_targets,omitempty"`
	ImportTargets       []string `json:"import_targets,omitempty"`
	ExportTargets       []string `json:"export_targets,omitempty"`
	RouteDistinguishers []string `json:"route_distinguishers,omitempty"`
	VNI                 int      `json:"vni,omitempty"`
	LocalPref           *int64   `json:"local_pref,omitempty"`
}

// BGPVPNAssoc associates a network, a router or a port with a BGP VPN.
type BGPVPNAssoc struct {
	Std
	BGPVPNID  string `json:"bgpvpn_id" nagare:"ref=neutron-bgpvpn,ondelete=cascade,required,parent"`
	NetworkID string `json:"network_id,omitempty" nagare:"ref=neutron-network,ondelete=cascade"`
	RouterID  string `json:"router_id,omitempty" nagare:"ref=neutron-router,ondelete=cascade"`
	PortID    string `json:"port_id,omitempty" nagare:"ref=neutron-port,ondelete=cascade"`
	// Router: advertise its extra routes; port: its fixed IPs, and
	// routes through it (bgpvpn-routes-control).
	AdvertiseExtraRoutes bool          `json:"advertise_extra_routes,omitempty"`
	AdvertiseFixedIPs    bool          `json:"advertise_fixed_ips,omitempty"`
	Routes               []BGPVPNRoute `json:"routes,omitempty"`
	// Target ("network/<id>") is unique per VPN.
	Target string `json:"target" nagare:"unique=bgpvpn_id"`
}

var (
	BGPVPNKind      = model.RegisterInternal("neutron-bgpvpn", "neutron-bgpvpns", "A BGP VPN.", &BGPVPN{}, nil)
	BGPVPNAssocKind = model.RegisterInternal("neutron-bgpvpn-association", "neutron-bgpvpn-associations", "A network, router or port of a BGP VPN.", &BGPVPNAssoc{}, nil)
)

// BGPVPNRequest is what a create or update of a BGP VPN asks.
type BGPVPNRequest struct {
	StdRequest
	Type                                                            string // create only: l2 or l3
	RouteTargets, ImportTargets, ExportTargets, RouteDistinguishers *[]string
	VNI                                                             *int
	LocalPref                                                       **int64
}

// BGPVPNRoute is a route a port association advertises through its port:
// a prefix, or the routes of another BGP VPN.
type BGPVPNRoute struct {
	Type      string       `json:"type"`
	Prefix    netip.Prefix `json:"prefix,omitzero"`
	BGPVPNID  string       `json:"bgpvpn_id,omitempty"`
	LocalPref *int64       `json:"local_pref,omitempty"`
}

// BGPVPNAssocRequest is what a create or update of an association asks.
type BGPVPNAssocRequest struct {
	Kind                                    string // "network", "router", "port"
	TargetID                                string // create only
	AdvertiseExtraRoutes, AdvertiseFixedIPs *bool
	Routes                                  *[]BGPVPNRoute
}

func (r *BGPVPNRequest) apply(v *BGPVPN) {
	r.StdRequest.apply(&v.Std)
	set(&v.RouteTargets, r.RouteTargets)
	set(&v.ImportTargets, r.ImportTargets)
	set(&v.ExportTargets, r.ExportTargets)
	set(&v.RouteDistinguishers, r.RouteDistinguishers)
	set(&v.VNI, r.VNI)
	if r.LocalPref != nil {
		v.LocalPref = *r.LocalPref
	}
}

// CreateBGPVPN creates a BGP VPN (admins only, as in networking-bgpvpn).
func (s *Service) CreateBGPVPN(ctx context.Context, c *identity.Context, r BGPVPNRequest) (*BGPVPN, error) {
	cr, err := s.PrepareBGPVPN(c, r)
	return created[*BGPVPN](ctx, s, cr, err)
}

// PrepareBGPVPN checks a BGP VPN's create.
func (s *Service) PrepareBGPVPN(c *identity.Context, r BGPVPNRequest) (*Creation, error) {
	if err := adminOnly(c, "create_bgpvpn"); err != nil {
		return nil, err
	}
	st, err := s.creating(c, &r.StdRequest, "create_bgpvpn")
	if err != nil {
		return nil, err
	}
	v := &BGPVPN{Std: st, Type: r.Type}
	r.apply(v)
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := *v
		x.ID = newID()
		_, err := tx.Create(&x)
		return &x, err
	}), nil
}

// UpdateBGPVPN changes a BGP VPN.
func (s *Service) UpdateBGPVPN(ctx context.Context, c *identity.Context, id string, r BGPVPNRequest, ifRev int64) (*BGPVPN, error) {
	if err := adminOnly(c, "update_bgpvpn"); err != nil {
		return nil, err
	}
	return modify(ctx, s, c, id, "update_bgpvpn", ifRev, func(tx *nsdb.Tx, v *BGPVPN) error {
		r.apply(v)
		s.touch(&v.Std)
		return tx.Put(v)
	})
}

// DeleteBGPVPN deletes a BGP VPN with its associations.
func (s *Service) DeleteBGPVPN(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	if err := adminOnly(c, "delete_bgpvpn"); err != nil {
		return err
	}
	_, err := modify(ctx, s, c, id, "delete_bgpvpn", ifRev, func(tx *nsdb.Tx, v *BGPVPN) error {
		return tx.Delete(BGPVPNKind, id)
	})
	return err
}

// BGPVPNAssociations are a VPN's associations of a kind, for views and
// lists.
func (r *Reader) BGPVPNAssociations(id, kind string) []string {
	as, err := listOf[*BGPVPNAssoc](r.tx, "bgpvpn_id", id)
	r.failed(err)
	out := []string{}
	for _, a := range as {
		if t := a.target(kind); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func (a *BGPVPNAssoc) target(kind string) string {
	return map[string]string{"network": a.NetworkID, "router": a.RouterID, "port": a.PortID}[kind]
}

// CreateBGPVPNAssoc associates a network, router or port with a VPN:
// router associations need an l3 VPN; each object once.
func (s *Service) CreateBGPVPNAssoc(ctx context.Context, c *identity.Context, vpnID string, r BGPVPNAssocRequest) (*BGPVPNAssoc, error) {
	action := "create_bgpvpn_" + r.Kind + "_association"
	if err := may(c, action); err != nil {
		return nil, err
	}
	var out *BGPVPNAssoc
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		v, err := get[*BGPVPN](tx, c, vpnID)
		if err != nil {
			return err
		}
		a := &BGPVPNAssoc{Std: s.newStd(v.ProjectID), BGPVPNID: vpnID, AdvertiseExtraRoutes: true, AdvertiseFixedIPs: true}
		a.ID = newID()
		switch r.Kind {
		case "network":
			_, err = get[*Network](tx, c, r.TargetID)
			a.NetworkID = r.TargetID
		case "router":
			if v.Type != "l3" {
				return NewError(BadRequest, "BGPVPNRouterAssociationNotSupported", "BGPVPN nagare driver does not support router associations with a BGPVPN of type %s", v.Type)
			}
			_, err = get[*Router](tx, c, r.TargetID)
			a.RouterID = r.TargetID
		case "port":
			_, err = get[*Port](tx, c, r.TargetID)
			a.PortID = r.TargetID
		}
		if err != nil {
			return err
		}
		r.apply(a)
		if err := checkVPNRoutes(tx, c, a.Routes); err != nil {
			return err
		}
		a.Target = r.Kind + "/" + r.TargetID
		if owner, err := tx.UniqueOwner(BGPVPNAssocKind, BGPVPNAssocKind.Field("target"), vpnID, a.Target); err != nil {
			return err
		} else if owner != "" {
			return NewError(BadRequest, map[string]string{"network": "BGPVPNNetAssocAlreadyExists", "router": "BGPVPNRouterAssocAlreadyExists",
				"port": "BGPVPNPortAssocAlreadyExists"}[r.Kind], "%s %s is already associated to BGPVPN %s", r.Kind, r.TargetID, vpnID)
		}
		out = a
		_, err = tx.Create(a)
		return err
	})
	return out, err
}

func (r *BGPVPNAssocRequest) apply(a *BGPVPNAssoc) {
	set(&a.AdvertiseExtraRoutes, r.AdvertiseExtraRoutes)
	set(&a.AdvertiseFixedIPs, r.AdvertiseFixedIPs)
	set(&a.Routes, r.Routes)
}

// checkRoutes checks that the VPNs a port association's routes name
// exist for the caller.
func checkVPNRoutes(tx *nsdb.Tx, c *identity.Context, routes []BGPVPNRoute) error {
	for _, rt := range routes {
		if rt.Type == "bgpvpn" {
			if _, err := get[*BGPVPN](tx, c, rt.BGPVPNID); err != nil {
				return err
			}
		}
	}
	return nil
}

// bgpvpnAssoc reads an association of a kind of a VPN the caller sees.
func bgpvpnAssoc(tx *nsdb.Tx, c *identity.Context, vpnID, kind, id string) (*BGPVPNAssoc, error) {
	if _, err := get[*BGPVPN](tx, c, vpnID); err != nil {
		return nil, err
	}
	o, err := tx.Get(BGPVPNAssocKind, id)
	if errors.Is(err, model.ErrNotFound) || (err == nil && (o.(*BGPVPNAssoc).BGPVPNID != vpnID || o.(*BGPVPNAssoc).target(kind) == "")) {
		return nil, NewError(NotFound, "BGPVPN"+map[string]string{"network": "Net", "router": "Router", "port": "Port"}[kind]+"AssocNotFound",
			"BGPVPN %s association %s could not be found for BGPVPN %s", kind, id, vpnID)
	}
	if err != nil {
		return nil, err
	}
	return o.(*BGPVPNAssoc), nil
}

// GetBGPVPNAssoc reads an association.
func (s *Service) GetBGPVPNAssoc(ctx context.Context, c *identity.Context, vpnID, kind, id string) (*BGPVPNAssoc, error) {
	var out *BGPVPNAssoc
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		var err error
		out, err = bgpvpnAssoc(tx, c, vpnID, kind, id)
		return err
	})
	return out, err
}

// ListBGPVPNAssocs lists a VPN's associations of a kind.
func (s *Service) ListBGPVPNAssocs(ctx context.Context, c *identity.Context, vpnID, kind string) ([]*BGPVPNAssoc, error) {
	var out []*BGPVPNAssoc
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		if _, err := get[*BGPVPN](tx, c, vpnID); err != nil {
			return err
		}
		as, err := listOf[*BGPVPNAssoc](tx, "bgpvpn_id", vpnID)
		out = slices.DeleteFunc(as, func(a *BGPVPNAssoc) bool { return a.target(kind) == "" })
		return err
	})
	return out, err
}

// UpdateBGPVPNAssoc changes what an association advertises.
func (s *Service) UpdateBGPVPNAssoc(ctx context.Context, c *identity.Context, vpnID, kind, id string, r BGPVPNAssocRequest) (*BGPVPNAssoc, error) {
	if err := may(c, "update_bgpvpn_"+kind+"_association"); err != nil {
		return nil, err
	}
	var out *BGPVPNAssoc
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		a, err := bgpvpnAssoc(tx, c, vpnID, kind, id)
		if err != nil {
			return err
		}
		r.apply(a)
		if err := checkVPNRoutes(tx, c, a.Routes); err != nil {
			return err
		}
		s.touch(&a.Std)
		out = a
		return tx.Put(a)
	})
	return out, err
}

// DeleteBGPVPNAssoc removes an association.
func (s *Service) DeleteBGPVPNAssoc(ctx context.Context, c *identity.Context, vpnID, kind, id string) error {
	if err := may(c, "delete_bgpvpn_"+kind+"_association"); err != nil {
		return err
	}
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		if _, err := bgpvpnAssoc(tx, c, vpnID, kind, id); err != nil {
			return err
		}
		return tx.Delete(BGPVPNAssocKind, id)
	})
	return err
}
