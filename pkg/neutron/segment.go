package neutron

import (
	"context"
	"errors"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Segments (segment): the L2 segments of a network. A network's first
// segment is its provider attributes; GET /segments shows it too, read
// only (it changes with them). More segments join the network's bridge:
// a flat or VLAN one is another uplink port on its physical network, an
// overlay one (vxlan, gre, geneve: Nagare's overlays all ride the tunnel
// zone's encapsulation) only claims its id.

// NetSegment is an extra segment of a network.
type NetSegment struct {
	Std
	NetworkID       string `json:"network_id" nagare:"ref=neutron-network,ondelete=cascade,required,parent"`
	NetworkType     string `json:"network_type"`
	PhysicalNetwork string `json:"physical_network,omitempty"`
	SegmentationID  int    `json:"segmentation_id,omitempty"`
	// Key is the segment as networks' Segment names theirs: unique.
	Key string `json:"key" nagare:"unique"`
}

var NetSegmentKind = model.RegisterInternal("neutron-segment", "neutron-segments", "An extra segment of a Neutron network.", &NetSegment{}, nil)

// SegmentRequest is what a create or update of a segment asks.
type SegmentRequest struct {
	StdRequest
	NetworkID string // create only
	Segment          // create only
}

// FirstSegmentID is the id GET /segments gives a network's first segment.
func FirstSegmentID(netID string) string { return DerivedID("segment", netID) }

// FirstSegment is a network's first segment as a NetSegment.
func FirstSegment(n *Network) *NetSegment {
	seg := &NetSegment{Std: Std{ProjectID: n.ProjectID, CreatedAt: n.CreatedAt, UpdatedAt: n.UpdatedAt, RevisionNumber: 1},
		NetworkID: n.ID, NetworkType: n.NetworkType, PhysicalNetwork: n.PhysicalNetwork, SegmentationID: n.SegmentationID}
	seg.ID = FirstSegmentID(n.ID)
	return seg
}

// TranslateSegment: a flat or VLAN segment is an uplink port of the
// network's bridge on its physical network; an overlay one has no native
// form.
func TranslateSegment(seg *NetSegment) []model.Object {
	if seg.NetworkType != "flat" && seg.NetworkType != "vlan" {
		return nil
	}
	p := &model.Port{Meta: model.Meta{ID: DerivedID("segment-port", seg.ID)}, BridgeID: seg.NetworkID, State: model.StateUp,
		PhysicalNetwork: seg.PhysicalNetwork, PhysicalVLAN: uint16(seg.SegmentationID)}
	return []model.Object{p}
}

// CreateSegment adds a segment to a network (admins only, as in Neutron).
func (s *Service) CreateSegment(ctx context.Context, c *identity.Context, r SegmentRequest) (*NetSegment, error) {
	cr, err := s.PrepareSegment(c, r)
	return created[*NetSegment](ctx, s, cr, err)
}

// PrepareSegment checks a segment's create: the provider rules of ML2's
// type drivers.
func (s *Service) PrepareSegment(c *identity.Context, r SegmentRequest) (*Creation, error) {
	if !c.IsAdmin() {
		return nil, PolicyNotAuthorized("create_segment")
	}
	st, err := s.creating(c, &r.StdRequest, "create_segment")
	if err != nil {
		return nil, err
	}
	probe := &Network{}
	if err := s.segment(probe, &NetworkRequest{Provider: &r.Segment}); err != nil {
		return nil, err
	}
	seg := &NetSegment{Std: st, NetworkID: r.NetworkID, NetworkType: probe.NetworkType, PhysicalNetwork: probe.PhysicalNetwork,
		SegmentationID: probe.SegmentationID}
	r.StdRequest.apply(&seg.Std)
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := *seg
		x.ID = newID()
		n, err := get[*Network](tx, c, x.NetworkID)
		if err != nil {
			return nil, err
		}
		x.ProjectID, x.ProjectRef = n.ProjectID, n.ProjectRef
		claim := &Network{Std: Std{Meta: model.Meta{ID: x.ID}}, NetworkType: x.NetworkType, PhysicalNetwork: x.PhysicalNetwork, SegmentationID: x.SegmentationID}
		if err := claimSegment(tx, claim); err != nil {
			return nil, err
		}
		x.SegmentationID, x.Key = claim.SegmentationID, claim.Segment
		return createWith(tx, &x, TranslateSegment(&x))
	}), nil
}

// UpdateSegment changes a segment's name or description.
func (s *Service) UpdateSegment(ctx context.Context, c *identity.Context, id string, r SegmentRequest, ifRev int64) (*NetSegment, error) {
	if !c.IsAdmin() {
		return nil, PolicyNotAuthorized("update_segment")
	}
	if first, err := s.isFirstSegment(ctx, c, id); err != nil || first {
		if err == nil {
			err = firstSegmentError(id)
		}
		return nil, err
	}
	return rename[*NetSegment](ctx, s, c, id, "update_segment", r.StdRequest, ifRev)
}

// DeleteSegment removes an extra segment.
func (s *Service) DeleteSegment(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	if !c.IsAdmin() {
		return PolicyNotAuthorized("delete_segment")
	}
	if first, err := s.isFirstSegment(ctx, c, id); err != nil || first {
		if err == nil {
			err = firstSegmentError(id)
		}
		return err
	}
	_, err := modify(ctx, s, c, id, "delete_segment", ifRev, func(tx *nsdb.Tx, seg *NetSegment) error {
		if err := apply(tx, &seg.Std, nil); err != nil {
			return err
		}
		return tx.Delete(NetSegmentKind, id)
	})
	return err
}

// firstSegmentError is the refusal of a write to a network's first
// segment.
func firstSegmentError(id string) error {
	return inUse("SegmentInUse", "Segment '%s' cannot be deleted: it is its network's first segment, which changes with the network's provider attributes.", id)
}

// Segments are the segments the caller sees: each visible network's first
// and its extra ones.
func (s *Service) Segments(ctx context.Context, c *identity.Context) ([]*NetSegment, error) {
	var out []*NetSegment
	err := s.Read(ctx, c, func(r *Reader) error {
		nets, err := r.List(NetworkKind, "", "")
		if err != nil {
			return err
		}
		for _, o := range nets {
			n := o.(*Network)
			out = append(out, FirstSegment(n))
			extra, err := listOf[*NetSegment](r.tx, "network_id", n.ID)
			if err != nil {
				return err
			}
			out = append(out, extra...)
		}
		return nil
	})
	return out, err
}

// GetSegment reads a segment, a network's first included.
func (s *Service) GetSegment(ctx context.Context, c *identity.Context, id string) (*NetSegment, error) {
	segs, err := s.Segments(ctx, c)
	if err != nil {
		return nil, err
	}
	for _, seg := range segs {
		if seg.ID == id {
			return seg, nil
		}
	}
	return nil, NewError(NotFound, "SegmentNotFound", "Segment %s could not be found.", id)
}

// isFirstSegment reports whether id names a network's first segment.
func (s *Service) isFirstSegment(ctx context.Context, c *identity.Context, id string) (bool, error) {
	_, err := s.store.Get(ctx, NetSegmentKind, id)
	if err == nil || !errors.Is(err, model.ErrNotFound) {
		return false, err
	}
	seg, err := s.GetSegment(ctx, c, id)
	var e *Error
	if errors.As(err, &e) && e.Class == NotFound {
		return false, nil
	}
	return seg != nil, err
}
