// Package hostclaim is what a host's agent may change in the topology on
// its own behalf, and the rules that bound it. Only the server writes the
// topology in a secure deployment (an agent's etcd role reads obj/ and
// writes its own runtime state only), yet agents decide a few things the
// topology records:
//
//   - their host record's addresses (the tunnel IP) and the physical
//     networks they map (Neutron's agents report their mappings alike);
//   - which gateway binds an uplink of a physical network (package
//     agent/uplink), taking it over when its holder dies;
//   - which agent checks a router's load-balancer members, from a
//     health-check port it binds to itself (package agent/lbhealth).
//
// Each is one operation of Service for host hostID, checked against the
// NSDB in the transaction that writes it: a host may change its own record
// and nothing of another's; it may bind an uplink only of a physical
// network it maps, and only one whose holder is gone (unbound, dead, or no
// longer mapping it); it may create, bind or remove a router's health-check
// port only while it is alive and the router's rendezvous choice among the
// alive hosts (or the port's holder is gone). A compromised hypervisor can
// therefore take nothing a live, healthy peer holds.
//
// An agent of an insecure deployment calls Service over its own NSDB
// connection. A joined agent calls the server's host-claim API (package
// api/hostclaim) with its host certificate; the server authenticates the
// certificate (the host is its CN, its serial one the server issued, the
// host not revoked) and calls the same Service for that host. Either way
// the rules are the ones above; the failover semantics are unchanged, but
// in secure mode a takeover needs a server to answer.
package hostclaim

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Claims is what an agent calls: Service directly, or the server's API.
type Claims interface {
	// SetHost changes host hostID's own record (nil fields unchanged).
	SetHost(ctx context.Context, hostID string, h HostInfo) error
	// ClaimUplink binds an uplink to host hostID.
	ClaimUplink(ctx context.Context, hostID string, u Uplink) error
	// EnsureHealthPort creates router routerID's health-check port and
	// its route, or binds the existing port to host hostID; it returns
	// the port's id.
	EnsureHealthPort(ctx context.Context, hostID, routerID string) (portID string, err error)
	// RemoveHealthPort deletes a health-check port (a duplicate, or one
	// its router no longer needs).
	RemoveHealthPort(ctx context.Context, hostID, portID string) error
}

// HostInfo is what a host says of itself; nil fields (null in JSON) are
// not changed, empty ones are emptied.
type HostInfo struct {
	Addresses        []netip.Addr `json:"addresses"`
	PhysicalNetworks []string     `json:"physical_networks"`
}

// Uplink is a claim of an uplink port: the binding it replaces (the port's
// host as the claimant saw it, "" for none), the port's physical network
// and VLAN as the claimant saw them (a port changed meanwhile is not
// claimed on stale grounds), and the interface to bind.
type Uplink struct {
	PortID          string `json:"port_id"`
	PreviousHostID  string `json:"previous_host_id,omitempty"`
	PhysicalNetwork string `json:"physical_network"`
	PhysicalVLAN    uint16 `json:"physical_vlan,omitempty"`
	Interface       string `json:"interface_name"`
}

// Class is the kind of refusal; the API maps it to a status.
type Class int

// The classes.
const (
	Internal   Class = iota
	BadRequest       // a malformed request
	Forbidden        // the rules refuse this host
	NotFound         // no such port, router or host
	Conflict         // the object changed since the claimant saw it; look again
)

// Error is a refusal.
type Error struct {
	Class   Class
	Message string
}

func (e *Error) Error() string { return e.Message }

func refuse(c Class, format string, args ...any) *Error {
	return &Error{Class: c, Message: fmt.Sprintf(format, args...)}
}

// IsClass reports whether err is a refusal of class c.
func IsClass(err error, c Class) bool {
	var e *Error
	return errors.As(err, &e) && e.Class == c
}

// Service applies the claims to the NSDB.
type Service struct {
	store *nsdb.Store
}

// New returns the service over store.
func New(store *nsdb.Store) *Service { return &Service{store: store} }

var _ Claims = (*Service)(nil)

// errUnchanged ends a transaction that would write what is there.
var errUnchanged = errors.New("unchanged")

// update runs fn in a transaction; errUnchanged from fn is success
// without a write.
func (s *Service) update(ctx context.Context, fn func(tx *nsdb.Tx) error) error {
	_, err := s.store.Update(ctx, fn)
	if errors.Is(err, errUnchanged) {
		return nil
	}
	return err
}

// getObject reads an object in tx, answering NotFound for a missing one.
func getObject[T model.Object](tx *nsdb.Tx, what, id string) (T, error) {
	var zero T
	if !model.IsUUID(id) {
		return zero, refuse(NotFound, "%s %q does not exist", what, id)
	}
	o, err := tx.Get(model.KindOf(zero), id)
	if errors.Is(err, model.ErrNotFound) {
		return zero, refuse(NotFound, "%s %s does not exist", what, id)
	}
	if err != nil {
		return zero, err
	}
	return o.(T), nil
}

// requireAlive refuses a claim of a host whose agent holds no lease: a
// claim is made by a running agent, for itself.
func requireAlive(tx *nsdb.Tx, hostID string) error {
	alive, err := tx.HostAlive(hostID)
	if err != nil {
		return err
	}
	if !alive {
		return refuse(Forbidden, "host %s is not alive (its agent holds no lease)", hostID)
	}
	return nil
}

// SetHost implements Claims.
func (s *Service) SetHost(ctx context.Context, hostID string, info HostInfo) error {
	for _, a := range info.Addresses {
		if !a.IsValid() {
			return refuse(BadRequest, "addresses: an invalid address")
		}
	}
	for _, n := range info.PhysicalNetworks {
		if !model.ValidPhysicalNetwork(n) {
			return refuse(BadRequest, "physical_networks: %q is not a physical network name", n)
		}
	}
	return s.update(ctx, func(tx *nsdb.Tx) error {
		if _, err := getObject[*model.Host](tx, "host", hostID); err != nil {
			return err
		}
		_, err := tx.Modify(model.HostKind, hostID, 0, func(o model.Object) error {
			h, changed := o.(*model.Host), false
			if info.Addresses != nil && !slices.Equal(h.Addresses, info.Addresses) {
				h.Addresses, changed = info.Addresses, true
			}
			if info.PhysicalNetworks != nil && !slices.Equal(h.PhysicalNetworks, info.PhysicalNetworks) {
				h.PhysicalNetworks, changed = info.PhysicalNetworks, true
			}
			if !changed {
				return errUnchanged
			}
			return nil
		})
		return err
	})
}
