package neutron

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Tap as a Service (taas, taas-vlan-filter, tap-mirror,
// tap-mirror-both-direction): a tap service is a port that receives
// copies; a tap flow copies a source port's traffic to it; a tap mirror
// copies a port's traffic to a remote address over GRE or ERSPAN v1, one
// tunnel per direction. Each translates to native mirrors
// (model.Mirror), which the agent binding the mirrored port serves.
// Directions are the VM's: IN is what the VM receives, OUT what it sends.

// TapService is a port receiving mirrored traffic.
type TapService struct {
	Std
	PortID string `json:"port_id" nagare:"ref=neutron-port,ondelete=restrict,required"`
}

// TapFlow mirrors a source port to a tap service.
type TapFlow struct {
	Std
	TapServiceID string `json:"tap_service_id" nagare:"ref=neutron-tap-service,ondelete=restrict,required"`
	SourcePort   string `json:"source_port" nagare:"ref=neutron-port,ondelete=restrict,required"`
	Direction    string `json:"direction"`
	VLANFilter   string `json:"vlan_filter,omitempty"`
}

// TapMirror mirrors a port to a remote GRE or ERSPAN endpoint.
type TapMirror struct {
	Std
	PortID     string         `json:"port_id" nagare:"ref=neutron-port,ondelete=restrict,required"`
	Directions map[string]int `json:"directions"`
	// Quoted: the directions' tunnel ids were given as strings, and are
	// shown as given (python-neutronclient and gophercloud send strings).
	Quoted     bool       `json:"quoted,omitempty"`
	RemoteIP   netip.Addr `json:"remote_ip"`
	MirrorType string     `json:"mirror_type"`
}

var (
	TapServiceKind = model.RegisterInternal("neutron-tap-service", "neutron-tap-services", "A TaaS tap service.", &TapService{}, nil)
	TapFlowKind    = model.RegisterInternal("neutron-tap-flow", "neutron-tap-flows", "A TaaS tap flow.", &TapFlow{}, nil)
	TapMirrorKind  = model.RegisterInternal("neutron-tap-mirror", "neutron-tap-mirrors", "A TaaS GRE or ERSPAN tap mirror.", &TapMirror{}, nil)
)

// TapStatus is the status of tap services and flows: the agent binding
// their ports serves them as soon as they are written.
const TapStatus = "ACTIVE"

type (
	// TapServiceRequest is a create or update of a tap service.
	TapServiceRequest struct {
		StdRequest
		PortID string // create only
	}
	// TapFlowRequest is a create or update of a tap flow.
	TapFlowRequest struct {
		StdRequest
		TapServiceID, SourcePort, Direction, VLANFilter string // create only
	}
	// TapMirrorRequest is a create or update of a tap mirror.
	TapMirrorRequest struct {
		StdRequest
		PortID     string         // create only
		Directions map[string]int // create only: IN, OUT, BOTH
		Quoted     bool
		RemoteIP   netip.Addr
		MirrorType string
	}
)

// tapPort is a port the tap object's project owns: TaaS refuses another
// project's (PortDoesNotBelongToTenant, 403).
func tapPort(tx *nsdb.Tx, c *identity.Context, id, project string) (*Port, error) {
	p, err := get[*Port](tx, c, id)
	if err != nil {
		return nil, err
	}
	if p.ProjectID != project {
		return nil, NewError(NotAuthorized, "PortDoesNotBelongToTenant", "The specified port does not belong to the tenant")
	}
	return p, nil
}

// PrepareTapService checks a tap service's create.
func (s *Service) PrepareTapService(c *identity.Context, r TapServiceRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_tap_service")
	if err != nil {
		return nil, err
	}
	ts := &TapService{Std: st, PortID: r.PortID}
	r.StdRequest.apply(&ts.Std)
	return simpleCreate(st, ts, func(tx *nsdb.Tx, x *TapService) error {
		_, err := tapPort(tx, c, x.PortID, x.ProjectID)
		return err
	}), nil
}

// UpdateTapService changes a tap service's name or description.
func (s *Service) UpdateTapService(ctx context.Context, c *identity.Context, id string, r TapServiceRequest, ifRev int64) (*TapService, error) {
	return rename[*TapService](ctx, s, c, id, "update_tap_service", r.StdRequest, ifRev)
}

// DeleteTapService deletes a tap service and its flows.
func (s *Service) DeleteTapService(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_tap_service", ifRev, func(tx *nsdb.Tx, x *TapService) error {
		return deleteTapService(tx, x)
	})
	return err
}

func deleteTapService(tx *nsdb.Tx, x *TapService) error {
	flows, err := listOf[*TapFlow](tx, "tap_service_id", x.ID)
	if err != nil {
		return err
	}
	for _, f := range flows {
		if err := deleteTranslated(tx, TapFlowKind, &f.Std); err != nil {
			return err
		}
	}
	return tx.Delete(TapServiceKind, x.ID)
}

// deleteTranslated deletes an object and the native objects it owns.
func deleteTranslated(tx *nsdb.Tx, k *model.Kind, st *Std) error {
	if err := apply(tx, st, nil); err != nil {
		return err
	}
	return tx.Delete(k, st.ID)
}

// flowMirror is a tap flow's native mirror.
func flowMirror(f *TapFlow, servicePort string) *model.Mirror {
	return &model.Mirror{Meta: model.Meta{ID: DerivedID("tap-flow", f.ID)}, TenantID: f.ProjectID, PortID: f.SourcePort,
		Direction: strings.ToLower(f.Direction), DestPortID: servicePort, VLANs: f.VLANFilter}
}

// PrepareTapFlow checks a tap flow's create: its service and source port
// are the flow's project's.
func (s *Service) PrepareTapFlow(c *identity.Context, r TapFlowRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_tap_flow")
	if err != nil {
		return nil, err
	}
	if _, err := model.ParseVLANSet(r.VLANFilter); err != nil {
		return nil, Invalid("vlan_filter", "'%s' is not a valid VLAN range: VLANs are 0-4095, ranges low-high", r.VLANFilter)
	}
	f := &TapFlow{Std: st, TapServiceID: r.TapServiceID, SourcePort: r.SourcePort, Direction: r.Direction, VLANFilter: r.VLANFilter}
	r.StdRequest.apply(&f.Std)
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := clone(f)
		x.ID = newID()
		ts, err := get[*TapService](tx, c, x.TapServiceID)
		if err != nil {
			return nil, err
		}
		if ts.ProjectID != x.ProjectID {
			return nil, NewError(NotAuthorized, "TapServiceNotBelongToTenant", "Specified Tap Service does not belong to the tenant")
		}
		if _, err := tapPort(tx, c, x.SourcePort, x.ProjectID); err != nil {
			return nil, err
		}
		if x.SourcePort == ts.PortID {
			return nil, InvalidInput("A tap flow's source port cannot be its tap service's port %s", ts.PortID)
		}
		return createWith(tx, x, []model.Object{flowMirror(x, ts.PortID)})
	}), nil
}

// UpdateTapFlow changes a tap flow's name or description.
func (s *Service) UpdateTapFlow(ctx context.Context, c *identity.Context, id string, r TapFlowRequest, ifRev int64) (*TapFlow, error) {
	return rename[*TapFlow](ctx, s, c, id, "update_tap_flow", r.StdRequest, ifRev)
}

// DeleteTapFlow deletes a tap flow.
func (s *Service) DeleteTapFlow(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_tap_flow", ifRev, func(tx *nsdb.Tx, x *TapFlow) error {
		return deleteTranslated(tx, TapFlowKind, &x.Std)
	})
	return err
}

// mirrorDirections are the directions in the order their native mirrors
// are named.
var mirrorDirections = []string{"IN", "OUT", "BOTH"}

// tapMirrors is a tap mirror's native mirrors, one per direction.
func tapMirrors(m *TapMirror) []model.Object {
	encap := "gre"
	if m.MirrorType == "erspanv1" {
		encap = "erspan"
	}
	var out []model.Object
	for _, d := range mirrorDirections {
		id, ok := m.Directions[d]
		if !ok {
			continue
		}
		out = append(out, &model.Mirror{Meta: model.Meta{ID: DerivedID("tap-mirror-"+d, m.ID)}, TenantID: m.ProjectID,
			PortID: m.PortID, Direction: strings.ToLower(d), RemoteIP: m.RemoteIP, Encap: encap, Key: uint32(id)})
	}
	return out
}

// PrepareTapMirror checks a tap mirror's create: its port is the
// project's, and no mirror the caller sees uses its tunnel ids.
func (s *Service) PrepareTapMirror(c *identity.Context, r TapMirrorRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_tap_mirror")
	if err != nil {
		return nil, err
	}
	for d, id := range r.Directions {
		if id < 0 || id > 1<<32-1 {
			return nil, Invalid("directions", "'%d' is not a valid tunnel id of direction %s: 0 to 4294967295", id, d)
		}
	}
	m := &TapMirror{Std: st, PortID: r.PortID, Directions: r.Directions, Quoted: r.Quoted, RemoteIP: r.RemoteIP, MirrorType: r.MirrorType}
	r.StdRequest.apply(&m.Std)
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := clone(m)
		x.ID = newID()
		if _, err := tapPort(tx, c, x.PortID, x.ProjectID); err != nil {
			return nil, err
		}
		others, err := listOf[*TapMirror](tx, "", "")
		if err != nil {
			return nil, err
		}
		for _, o := range others {
			if !c.IsAdmin() && o.ProjectID != c.ProjectID {
				continue
			}
			for _, d := range mirrorDirections {
				if id, ok := o.Directions[d]; ok && slices.ContainsFunc(mirrorDirections, func(e string) bool { v, ok := x.Directions[e]; return ok && v == id }) {
					return nil, conflict("TapMirrorTunnelConflict", "Tap Mirror with tunnel_id %d already exists", id)
				}
			}
		}
		return createWith(tx, x, tapMirrors(x))
	}), nil
}

// UpdateTapMirror changes a tap mirror's name or description.
func (s *Service) UpdateTapMirror(ctx context.Context, c *identity.Context, id string, r TapMirrorRequest, ifRev int64) (*TapMirror, error) {
	return rename[*TapMirror](ctx, s, c, id, "update_tap_mirror", r.StdRequest, ifRev)
}

// DeleteTapMirror deletes a tap mirror.
func (s *Service) DeleteTapMirror(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_tap_mirror", ifRev, func(tx *nsdb.Tx, x *TapMirror) error {
		return deleteTranslated(tx, TapMirrorKind, &x.Std)
	})
	return err
}

// dropTaps deletes what taps a port that is going away: its tap
// services (and their flows), the flows from it and its mirrors, as
// TaaS's port delete handlers do.
func dropTaps(tx *nsdb.Tx, portID string) error {
	services, err := listOf[*TapService](tx, "port_id", portID)
	if err != nil {
		return err
	}
	for _, ts := range services {
		if err := deleteTapService(tx, ts); err != nil {
			return err
		}
	}
	flows, err := listOf[*TapFlow](tx, "source_port", portID)
	if err != nil {
		return err
	}
	for _, f := range flows {
		if err := deleteTranslated(tx, TapFlowKind, &f.Std); err != nil {
			return err
		}
	}
	mirrors, err := listOf[*TapMirror](tx, "port_id", portID)
	if err != nil {
		return err
	}
	for _, m := range mirrors {
		if err := deleteTranslated(tx, TapMirrorKind, &m.Std); err != nil {
			return err
		}
	}
	return nil
}
