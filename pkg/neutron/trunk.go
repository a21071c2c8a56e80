package neutron

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Trunks (trunk, trunk-details): VLAN-aware VMs. A trunk has a parent
// port, the VM's interface, and subports on other networks (or the
// same), each with a VLAN: frames the VM tags with a subport's VLAN belong
// to the subport's network. A subport translates to its native bridge
// port marked with the parent's port and the VLAN (model.Port.ParentID,
// ParentVLAN): the agent that binds the parent's interface carries it.

// Trunk is a Neutron trunk.
type Trunk struct {
	Std
	PortID       string `json:"port_id" nagare:"ref=neutron-port,ondelete=restrict,required,unique"`
	AdminStateUp bool   `json:"admin_state_up"`
}

// Subport is a port of a trunk with its VLAN.
type Subport struct {
	model.Meta
	TrunkID          string `json:"trunk_id" nagare:"ref=neutron-trunk,ondelete=cascade,required,parent"`
	PortID           string `json:"port_id" nagare:"ref=neutron-port,ondelete=restrict,required,unique"`
	SegmentationType string `json:"segmentation_type"`
	SegmentationID   int    `json:"segmentation_id"`
	// Position orders a trunk's subports as they were added (several
	// added in one transaction share a creation revision).
	Position int `json:"position"`
	// Slot ("vlan/100") is unique on its trunk (DuplicateSubPort).
	Slot string `json:"slot" nagare:"unique=trunk_id"`
}

var (
	TrunkKind   = model.RegisterInternal("neutron-trunk", "neutron-trunks", "A Neutron trunk.", &Trunk{}, nil)
	SubportKind = model.RegisterInternal("neutron-subport", "neutron-subports", "A subport of a Neutron trunk.", &Subport{}, nil)
)

// OwnerTrunkSubport is the device owner of a trunk's subports.
const OwnerTrunkSubport = "trunk:subport"

// TrunkRequest is what a create or update of a trunk asks.
type TrunkRequest struct {
	StdRequest
	PortID       string // create only
	AdminStateUp *bool
	Subports     []SubportRequest // create only
}

// SubportRequest is a requested subport: segmentation type "vlan" with an
// id, or "inherit" (the VLAN of its network); a removal names the port.
type SubportRequest struct {
	PortID           string
	SegmentationType string
	SegmentationID   int
}

// CreateTrunk creates a trunk on a parent port with its subports.
func (s *Service) CreateTrunk(ctx context.Context, c *identity.Context, r TrunkRequest) (*Trunk, error) {
	cr, err := s.PrepareTrunk(c, r)
	return created[*Trunk](ctx, s, cr, err)
}

// PrepareTrunk checks a trunk's create.
func (s *Service) PrepareTrunk(c *identity.Context, r TrunkRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_trunk")
	if err != nil {
		return nil, err
	}
	t := &Trunk{Std: st, PortID: r.PortID, AdminStateUp: true}
	r.StdRequest.apply(&t.Std)
	set(&t.AdminStateUp, r.AdminStateUp)
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := *t
		x.ID = newID()
		parent, err := get[*Port](tx, c, x.PortID)
		if err != nil {
			return nil, err
		}
		if owner, err := tx.UniqueOwner(TrunkKind, TrunkKind.Field("port_id"), "", parent.ID); err != nil {
			return nil, err
		} else if owner != "" {
			return nil, inUse("TrunkPortInUse", "Port %s is in use by another trunk.", parent.ID)
		}
		if sub, err := subportOf(tx, parent.ID); err != nil {
			return nil, err
		} else if sub != nil || isRouterPort(parent) || parent.DeviceOwner == OwnerFloatingIP {
			return nil, inUse("ParentPortInUse", "Port %s is currently in use and is not eligible for use as a parent port.", parent.ID)
		}
		if _, err := tx.Create(&x); err != nil {
			return nil, err
		}
		return &x, s.addSubports(tx, c, &x, parent, r.Subports)
	}), nil
}

// trunkSubports are a trunk's subports in the order they were added.
func trunkSubports(tx *nsdb.Tx, id string) ([]*Subport, error) {
	subs, err := listOf[*Subport](tx, "trunk_id", id)
	slices.SortFunc(subs, func(a, b *Subport) int { return a.Position - b.Position })
	return subs, err
}

// subportOf is the subport a port is, nil if none.
func subportOf(tx *nsdb.Tx, portID string) (*Subport, error) {
	subs, err := listOf[*Subport](tx, "port_id", portID)
	if err != nil || len(subs) == 0 {
		return nil, err
	}
	return subs[0], nil
}

// addSubports checks and adds subports, and re-translates their ports.
func (s *Service) addSubports(tx *nsdb.Tx, c *identity.Context, t *Trunk, parent *Port, reqs []SubportRequest) error {
	pn, err := tx.Get(NetworkKind, parent.NetworkID)
	if err != nil {
		return err
	}
	have, err := trunkSubports(tx, t.ID)
	if err != nil {
		return err
	}
	next := 0
	for _, sp := range have {
		next = max(next, sp.Position+1)
	}
	for i, r := range reqs {
		p, err := get[*Port](tx, c, r.PortID)
		if err != nil {
			return err
		}
		if p.ID == parent.ID {
			return inUse("ParentPortInUse", "Port %s is currently in use and is not eligible for use as a parent port.", p.ID)
		}
		if other, err := subportOf(tx, p.ID); err != nil {
			return err
		} else if other != nil {
			return inUse("PortInUseAsSubPort", "Port %s is currently a subport for trunk %s.", p.ID, other.TrunkID)
		}
		if trunks, err := listOf[*Trunk](tx, "port_id", p.ID); err != nil {
			return err
		} else if len(trunks) > 0 {
			return inUse("PortInUseAsTrunkParent", "Port %s is currently a parent port for trunk %s.", p.ID, trunks[0].ID)
		}
		if isRouterPort(p) || p.DeviceOwner == OwnerFloatingIP || p.DeviceOwner == OwnerDHCP {
			return inUse("PortInUse", "Unable to complete operation on port %s for network %s. Port already has an attached device %s.", p.ID, p.NetworkID, p.DeviceID)
		}
		no, err := tx.Get(NetworkKind, p.NetworkID)
		if err != nil {
			return err
		}
		n := no.(*Network)
		if n.MTU > pn.(*Network).MTU {
			return conflict("SubPortMtuGreaterThanTrunkPortMtu", "MTU %d of subport %s cannot be greater than MTU %d of trunk %s.", n.MTU, p.ID, pn.(*Network).MTU, t.ID)
		}
		typ, id := r.SegmentationType, r.SegmentationID
		if typ == "inherit" {
			if n.NetworkType != "vlan" {
				return InvalidInput("Segmentation type inherit requires a subport network of type vlan: network %s is %s", n.ID, n.NetworkType)
			}
			typ, id = "vlan", n.SegmentationID
		}
		sp := &Subport{Meta: model.Meta{ID: DerivedID("subport", p.ID)}, TrunkID: t.ID, PortID: p.ID, SegmentationType: typ,
			SegmentationID: id, Position: next + i, Slot: fmt.Sprintf("%s/%d", typ, id)}
		if owner, err := tx.UniqueOwner(SubportKind, SubportKind.Field("slot"), t.ID, sp.Slot); err != nil {
			return err
		} else if owner != "" {
			return inUse("DuplicateSubPort", "segmentation_type %s and segmentation_id %d already in use on trunk %s.", typ, id, t.ID)
		}
		if _, err := tx.Create(sp); err != nil {
			return err
		}
		p.DeviceOwner, p.DeviceID = OwnerTrunkSubport, t.ID
		s.touch(&p.Std)
		if err := s.writePort(tx, c, p, PortRequest{}, false); err != nil {
			return err
		}
	}
	return nil
}

// UpdateTrunk changes a trunk's name, description or admin state.
func (s *Service) UpdateTrunk(ctx context.Context, c *identity.Context, id string, r TrunkRequest, ifRev int64) (*Trunk, error) {
	return modify(ctx, s, c, id, "update_trunk", ifRev, func(tx *nsdb.Tx, t *Trunk) error {
		r.StdRequest.apply(&t.Std)
		set(&t.AdminStateUp, r.AdminStateUp)
		s.touch(&t.Std)
		return tx.Put(t)
	})
}

// boundTrunk refuses to change a trunk whose parent is bound to a host
// (TrunkInUse: Neutron changes subports of a bound trunk only through its
// agents).
func boundTrunk(tx *nsdb.Tx, t *Trunk) error {
	o, err := tx.Get(PortKind, t.PortID)
	if err != nil {
		return err
	}
	if p := o.(*Port); p.BindingHostID != "" && p.VIFType != vifBindingFailed && p.VIFType != vifUnbound {
		return inUse("TrunkInUse", "Trunk %s is currently in use.", t.ID)
	}
	return nil
}

// DeleteTrunk deletes a trunk whose parent is not bound; its subports
// become ordinary ports again.
func (s *Service) DeleteTrunk(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_trunk", ifRev, func(tx *nsdb.Tx, t *Trunk) error {
		if err := boundTrunk(tx, t); err != nil {
			return err
		}
		subs, err := listOf[*Subport](tx, "trunk_id", id)
		if err != nil {
			return err
		}
		if err := s.dropSubports(tx, c, subs); err != nil {
			return err
		}
		return tx.Delete(TrunkKind, id)
	})
	return err
}

// dropSubports removes subports and re-translates their ports.
func (s *Service) dropSubports(tx *nsdb.Tx, c *identity.Context, subs []*Subport) error {
	for _, sp := range subs {
		if err := tx.Delete(SubportKind, sp.ID); err != nil {
			return err
		}
		o, err := tx.Get(PortKind, sp.PortID)
		if err != nil {
			return err
		}
		p := o.(*Port)
		if p.DeviceOwner == OwnerTrunkSubport {
			p.DeviceOwner, p.DeviceID = "", ""
		}
		s.touch(&p.Std)
		if err := s.writePort(tx, c, p, PortRequest{}, false); err != nil {
			return err
		}
	}
	return nil
}

// ChangeSubports adds subports to a trunk or removes them (by port).
func (s *Service) ChangeSubports(ctx context.Context, c *identity.Context, id string, reqs []SubportRequest, add bool) (*Trunk, error) {
	action := "remove_subports"
	if add {
		action = "add_subports"
	}
	return modify(ctx, s, c, id, action, 0, func(tx *nsdb.Tx, t *Trunk) error {
		if add {
			parent, err := get[*Port](tx, c, t.PortID)
			if err != nil {
				return err
			}
			if err := s.addSubports(tx, c, t, parent, reqs); err != nil {
				return err
			}
		} else {
			have, err := trunkSubports(tx, id)
			if err != nil {
				return err
			}
			var gone []*Subport
			for _, r := range reqs {
				i := slices.IndexFunc(have, func(sp *Subport) bool { return sp.PortID == r.PortID })
				if i < 0 {
					return NewError(NotFound, "SubPortNotFound", "SubPort %s on trunk %s could not be found.", r.PortID, id)
				}
				gone = append(gone, have[i])
			}
			if err := s.dropSubports(tx, c, gone); err != nil {
				return err
			}
		}
		s.touch(&t.Std)
		return tx.Put(t)
	})
}

// Subports are a trunk's subports, for the caller.
func (s *Service) Subports(ctx context.Context, c *identity.Context, id string) ([]*Subport, error) {
	var out []*Subport
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		if _, err := get[*Trunk](tx, c, id); err != nil {
			return err
		}
		var err error
		out, err = trunkSubports(tx, id)
		return err
	})
	return out, err
}

// TrunkSubports are a trunk's subports, for views.
func (r *Reader) TrunkSubports(id string) []*Subport {
	subs, err := trunkSubports(r.tx, id)
	r.failed(err)
	return subs
}

// TrunkOf is the trunk a port is the parent of, nil if none. The trunks
// are read once per reader: a list of ports asks for each.
func (r *Reader) TrunkOf(portID string) *Trunk {
	if r.trunks == nil {
		r.trunks = map[string]*Trunk{}
		ts, err := listOf[*Trunk](r.tx, "", "")
		r.failed(err)
		for _, t := range ts {
			r.trunks[t.PortID] = t
		}
	}
	return r.trunks[portID]
}

// trunkInUse refuses to delete a port that is a trunk's parent or
// subport.
func trunkInUse(tx *nsdb.Tx, p *Port) error {
	ts, err := listOf[*Trunk](tx, "port_id", p.ID)
	if err != nil {
		return err
	}
	if len(ts) > 0 {
		return inUse("PortInUseAsTrunkParent", "Port %s is currently a parent port for trunk %s.", p.ID, ts[0].ID)
	}
	sp, err := subportOf(tx, p.ID)
	if err != nil {
		return err
	}
	if sp != nil {
		return inUse("PortInUseAsSubPort", "Port %s is currently a subport for trunk %s.", p.ID, sp.TrunkID)
	}
	return nil
}

// trunkParent is what a subport's translation needs: its parent port and
// VLAN ("" when the port is no subport).
func trunkParent(tx *nsdb.Tx, portID string) (string, uint16, error) {
	sp, err := subportOf(tx, portID)
	if err != nil || sp == nil {
		return "", 0, err
	}
	o, err := tx.Get(TrunkKind, sp.TrunkID)
	if errors.Is(err, model.ErrNotFound) {
		return "", 0, nil
	}
	if err != nil {
		return "", 0, err
	}
	return o.(*Trunk).PortID, uint16(sp.SegmentationID), nil
}
