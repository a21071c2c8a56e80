package model

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"

	"github.com/nagare/nagare/pkg/packet"
)

// Tx is the view of the store that write rules run in. Reads are recorded and
// re-checked at commit, so a rule that read an object cannot be fooled by a
// concurrent writer; writes are buffered and committed in one transaction
// together with the reference and uniqueness bookkeeping the store derives
// from the schema.
type Tx interface {
	// Get returns a copy of the stored object, or an error wrapping ErrNotFound.
	Get(k *Kind, id string) (Object, error)
	// List returns the objects of k whose field (JSON name) equals value,
	// in creation order; an empty field lists them all.
	List(k *Kind, field, value string) ([]Object, error)
	// Put creates or replaces o.
	Put(o Object) error
	// Delete removes an object, applying the on-delete policy of every
	// reference to it.
	Delete(k *Kind, id string) error
	// UniqueOwner returns the id of the object holding a unique value, or "".
	UniqueOwner(k *Kind, f *Field, scope, value string) (string, error)
}

// ConflictError is a write refused because of the state of other objects
// (HTTP 409): a taken peer, an object still referenced, a stale revision.
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// Is makes errors.Is(err, ErrConflict) true.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Conflictf builds a ConflictError.
func Conflictf(format string, args ...any) error {
	return &ConflictError{Msg: fmt.Sprintf(format, args...)}
}

// PrepareCreate runs the cross-object rules for a new object: it fills
// server-assigned fields (tunnel keys, router port MACs) and updates the
// objects the new one affects (a linked peer, the chain a rule joins). o has
// been defaulted and validated. The caller then Puts o.
func PrepareCreate(tx Tx, o Object) error {
	switch x := o.(type) {
	case *Port:
		if x.IsRouterPort() && x.MAC.IsZero() {
			x.MAC = RandomMAC()
		}
		key, err := freeTunnelKey(tx)
		if err != nil {
			return err
		}
		x.TunnelKey = key
		if x.PeerID != "" {
			return link(tx, x, x.PeerID)
		}
	case *Route:
		return checkRoutePort(tx, x)
	case *BGPPeer:
		return prepareBGPPeer(tx, x)
	case *Rule:
		chain, err := getAs[*Chain](tx, ChainKind, x.ChainID, "chain_id")
		if err != nil {
			return err
		}
		pos := x.Position
		x.Position = 0 // derived from the chain on read
		if slices.Contains(chain.RuleIDs, x.ID) {
			// Written in one transaction with a chain that lists it
			// already (the Neutron translation writes chains whole): it
			// keeps the place the chain gives it.
			return nil
		}
		chain.RuleIDs = insertAt(chain.RuleIDs, x.ID, pos)
		return tx.Put(chain)
	case *DHCPHost:
		return checkDHCPHostAddress(tx, x)
	case *VIP:
		return checkVIPPool(tx, x)
	}
	return nil
}

// PrepareUpdate runs the cross-object rules for replacing old by new. Parent
// references never change: a port does not move between devices.
func PrepareUpdate(tx Tx, old, new Object) error {
	k := KindOf(old)
	for _, f := range k.Fields {
		if (f.Parent || f.ReadOnly) && !f.Derived && !reflect.DeepEqual(f.Value(old).Interface(), f.Value(new).Interface()) {
			return fieldErr(f.JSON, "cannot be changed after creation")
		}
	}
	switch x := new.(type) {
	case *Port:
		o := old.(*Port)
		if o.PeerID == x.PeerID {
			return nil
		}
		if o.PeerID != "" {
			if err := unlink(tx, o.ID, o.PeerID); err != nil {
				return err
			}
		}
		if x.PeerID != "" {
			return link(tx, x, x.PeerID)
		}
	case *Route:
		return checkRoutePort(tx, x)
	case *BGPPeer:
		return prepareBGPPeer(tx, x)
	case *Rule:
		if x.Position == 0 {
			return nil
		}
		chain, err := getAs[*Chain](tx, ChainKind, x.ChainID, "chain_id")
		if err != nil {
			return err
		}
		chain.RuleIDs = insertAt(slices.DeleteFunc(chain.RuleIDs, func(id string) bool { return id == x.ID }), x.ID, x.Position)
		x.Position = 0
		return tx.Put(chain)
	case *DHCPHost:
		return checkDHCPHostAddress(tx, x)
	case *VIP:
		return checkVIPPool(tx, x)
	}
	return nil
}

// insertAt inserts id at a 1-based position; 0 or past the end appends.
func insertAt(ids []string, id string, pos int) []string {
	if pos <= 0 || pos > len(ids) {
		return append(ids, id)
	}
	return slices.Insert(ids, pos-1, id)
}

// RulePosition returns the 1-based place of a rule in its chain, or 0.
func RulePosition(c *Chain, ruleID string) int {
	return slices.Index(c.RuleIDs, ruleID) + 1
}

func getAs[T Object](tx Tx, k *Kind, id, field string) (T, error) {
	var zero T
	o, err := tx.Get(k, id)
	if errors.Is(err, ErrNotFound) {
		fe := fieldErr(field, "%s %s does not exist", k.Name, id)
		fe.Missing = true
		return zero, fe
	}
	if err != nil {
		return zero, err
	}
	return o.(T), nil
}

// link makes p and the port peerID each other's peer. Interior links join a
// router to a bridge or to another router (MidoNet's rule: bridges are not
// linked to bridges), and neither end may be bound to an interface.
func link(tx Tx, p *Port, peerID string) error {
	peer, err := getAs[*Port](tx, PortKind, peerID, "peer_id")
	if err != nil {
		return err
	}
	switch {
	case peer.PeerID != "" && peer.PeerID != p.ID:
		return Conflictf("port %s is already linked to port %s; unlink it first", peer.ID, peer.PeerID)
	case peer.Bound():
		return Conflictf("port %s is bound to interface %s on host %s; an exterior port cannot be linked", peer.ID, peer.InterfaceName, peer.HostID)
	case p.BridgeID != "" && peer.BridgeID != "":
		return fieldErr("peer_id", "bridge ports can only be linked to router ports")
	case p.DeviceID() == peer.DeviceID():
		return fieldErr("peer_id", "both ports belong to the same device")
	}
	peer.PeerID = p.ID
	return tx.Put(peer)
}

func unlink(tx Tx, selfID, peerID string) error {
	o, err := tx.Get(PortKind, peerID)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	peer := o.(*Port)
	if peer.PeerID != selfID {
		return nil
	}
	peer.PeerID = ""
	return tx.Put(peer)
}

func freeTunnelKey(tx Tx) (uint32, error) {
	f := PortKind.Field("tunnel_key")
	var b [4]byte
	for range 64 {
		_, _ = rand.Read(b[:])
		key := binary.LittleEndian.Uint32(b[:]) & packet.MaxTunnelKey
		if packet.ReservedTunnelKey(key) {
			continue
		}
		owner, err := tx.UniqueOwner(PortKind, f, "", strconv.FormatUint(uint64(key), 10))
		if err != nil {
			return 0, err
		}
		if owner == "" {
			return key, nil
		}
	}
	return 0, Conflictf("no free tunnel key found; the 24-bit key space is nearly exhausted")
}

func checkRoutePort(tx Tx, r *Route) error {
	if r.PortID == "" {
		return nil
	}
	p, err := getAs[*Port](tx, PortKind, r.PortID, "port_id")
	if err != nil {
		return err
	}
	if p.RouterID != r.RouterID {
		return fieldErr("port_id", "port %s is not a port of router %s", p.ID, r.RouterID)
	}
	return nil
}

func checkDHCPHostAddress(tx Tx, h *DHCPHost) error {
	s, err := getAs[*DHCPSubnet](tx, DHCPSubnetKind, h.DHCPSubnetID, "dhcp_subnet_id")
	if err != nil {
		return err
	}
	if !s.Subnet.Contains(h.Address) {
		return fieldErr("address", "%s is outside DHCP subnet %s", h.Address, s.Subnet)
	}
	return nil
}

func checkVIPPool(tx Tx, v *VIP) error {
	p, err := getAs[*Pool](tx, PoolKind, v.PoolID, "pool_id")
	if err != nil {
		return err
	}
	if p.LoadBalancerID != v.LoadBalancerID {
		return fieldErr("pool_id", "pool %s belongs to another load balancer", p.ID)
	}
	return nil
}
