package hostclaim

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// ValidInterfaceName reports whether s can name a Linux interface (1-15
// characters, no '/', ':' or white space).
func ValidInterfaceName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	return !strings.ContainsAny(s, "/: \t\n")
}

// ClaimUplink implements Claims: the port must be an uplink of the
// physical network and VLAN the claimant saw, still bound as it saw it
// (Conflict otherwise: it looks again); the claimant must be alive and
// map the physical network; and the binding it replaces must be its own
// or gone (none, a dead host, a host that no longer maps the network).
func (s *Service) ClaimUplink(ctx context.Context, hostID string, u Uplink) error {
	if !ValidInterfaceName(u.Interface) {
		return refuse(BadRequest, "interface_name: %q is not a Linux interface name", u.Interface)
	}
	return s.update(ctx, func(tx *nsdb.Tx) error {
		p, err := getObject[*model.Port](tx, "port", u.PortID)
		if err != nil {
			return err
		}
		if p.PhysicalNetwork == "" || p.BridgeID == "" {
			return refuse(Forbidden, "port %s is not an uplink of a physical network", p.ID)
		}
		if p.HostID != u.PreviousHostID || p.PhysicalNetwork != u.PhysicalNetwork || p.PhysicalVLAN != u.PhysicalVLAN {
			return refuse(Conflict, "uplink %s changed meanwhile (it is bound to %q, on %s VLAN %d)", p.ID, p.HostID, p.PhysicalNetwork, p.PhysicalVLAN)
		}
		me, err := getObject[*model.Host](tx, "host", hostID)
		if err != nil {
			return err
		}
		if !slices.Contains(me.PhysicalNetworks, p.PhysicalNetwork) {
			return refuse(Forbidden, "host %s does not map physical network %s", hostID, p.PhysicalNetwork)
		}
		if err := requireAlive(tx, hostID); err != nil {
			return err
		}
		if prev := p.HostID; prev != "" && prev != hostID {
			if err := holderGone(tx, prev, p); err != nil {
				return err
			}
		}
		if p.HostID == hostID && p.InterfaceName == u.Interface {
			return errUnchanged
		}
		_, err = tx.Modify(model.PortKind, p.ID, 0, func(o model.Object) error {
			x := o.(*model.Port)
			x.HostID, x.InterfaceName = hostID, u.Interface
			return nil
		})
		return err
	})
}

// holderGone refuses to take uplink p from host prev while prev is alive
// and maps p's physical network.
func holderGone(tx *nsdb.Tx, prev string, p *model.Port) error {
	alive, err := tx.HostAlive(prev)
	if err != nil || !alive {
		return err
	}
	o, err := tx.Get(model.HostKind, prev)
	if errors.Is(err, model.ErrNotFound) {
		return nil // a host that is gone holds nothing
	} else if err != nil {
		return err
	}
	if slices.Contains(o.(*model.Host).PhysicalNetworks, p.PhysicalNetwork) {
		return refuse(Forbidden, "uplink %s is held by host %s, which is alive and maps %s", p.ID, prev, p.PhysicalNetwork)
	}
	return nil
}
