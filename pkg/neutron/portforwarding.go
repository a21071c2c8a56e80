package neutron

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strconv"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// Port forwardings of floating IPs (floating-ip-port-forwarding).

// PortForwardingRequest is what a create or update of a port forwarding
// asks; zero values are not given (none of them is a valid value).
type PortForwardingRequest struct {
	Description       *string
	InternalPortID    string
	InternalIPAddress netip.Addr // IPv4
	// The ports, one (InternalPort, ExternalPort: 1 to 65535) or a range
	// (InternalRange, ExternalRange: first and last).
	InternalPort, ExternalPort   int
	InternalRange, ExternalRange [2]int
	Protocol                     string // tcp or udp
}

func (r *PortForwardingRequest) apply(pf *PortForwarding) {
	set(&pf.Description, r.Description)
	if r.InternalPortID != "" {
		pf.InternalPortID = r.InternalPortID
	}
	if r.InternalIPAddress.IsValid() {
		pf.InternalIPAddress = r.InternalIPAddress
	}
	if r.InternalPort != 0 {
		pf.InternalPort, pf.InternalPortEnd = r.InternalPort, 0
	}
	if r.InternalRange[0] != 0 {
		pf.InternalPort, pf.InternalPortEnd = r.InternalRange[0], r.InternalRange[1]
	}
	if r.ExternalPort != 0 {
		pf.ExternalPort, pf.ExternalPortEnd = r.ExternalPort, 0
	}
	if r.ExternalRange[0] != 0 {
		pf.ExternalPort, pf.ExternalPortEnd = r.ExternalRange[0], r.ExternalRange[1]
	}
	if pf.InternalPortEnd == pf.InternalPort {
		pf.InternalPortEnd = 0
	}
	if pf.ExternalPortEnd == pf.ExternalPort {
		pf.ExternalPortEnd = 0
	}
	if r.Protocol != "" {
		pf.Protocol = r.Protocol
	}
	pf.ExternalKey = pf.Protocol + "/" + strconv.Itoa(pf.ExternalPort)
}

// checkRanges is Neutron's _validate_ranges and _check_port_collisions:
// internal and external ranges of the same size, or one internal port for
// a range; no two forwardings of a floating IP and protocol with
// overlapping external ranges, nor of an internal address and protocol
// with overlapping internal ranges.
func checkRanges(tx *nsdb.Tx, f *FloatingIP, pf *PortForwarding) error {
	il, ih := pf.InternalRange()
	el, eh := pf.ExternalRange()
	if ih > il && ih-il != eh-el {
		return BadResourceRequest("port_forwarding", "Invalid ranges of internal and/or external ports. The relation between internal and external ports must be N-N or 1-N")
	}
	collides := func(key string, a1, a2, b1, b2 int) error {
		if max(a1, b1) <= min(a2, b2) {
			return BadResourceRequest("port_forwarding", "There is a port collision with the %s. The following ranges collide: %d:%d and %d:%d", key, b1, b2, a1, a2)
		}
		return nil
	}
	same, err := listOf[*PortForwarding](tx, "floatingip_id", f.ID)
	if err != nil {
		return err
	}
	for _, o := range same {
		if o.ID == pf.ID || o.Protocol != pf.Protocol {
			continue
		}
		ol, oh := o.ExternalRange()
		if err := collides("external_port_range", el, eh, ol, oh); err != nil {
			return err
		}
	}
	users, err := listOf[*PortForwarding](tx, "internal_port_id", pf.InternalPortID)
	if err != nil {
		return err
	}
	for _, o := range users {
		if o.ID == pf.ID || o.Protocol != pf.Protocol || o.InternalIPAddress != pf.InternalIPAddress {
			continue
		}
		ol, oh := o.InternalRange()
		if err := collides("internal_port_range", il, ih, ol, oh); err != nil {
			return err
		}
	}
	return nil
}

// CreatePortForwarding forwards a protocol port of an unassociated
// floating IP to an address of a port behind the floating IP's router.
func (s *Service) CreatePortForwarding(ctx context.Context, c *identity.Context, fipID string, r PortForwardingRequest) (*PortForwarding, error) {
	if err := may(c, "create_floatingip_port_forwarding"); err != nil {
		return nil, err
	}
	pf := &PortForwarding{FloatingIPID: fipID}
	r.apply(pf)
	var out *PortForwarding
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		f, err := get[*FloatingIP](tx, c, fipID)
		if err != nil {
			return err
		}
		x := *pf
		x.Std = s.newStd(f.ProjectID)
		x.Description = pf.Description
		x.ID = newID()
		if err := s.checkForwarding(tx, c, f, &x); err != nil {
			return err
		}
		if _, err := tx.Create(&x); err != nil {
			return err
		}
		out = &x
		return s.retranslateRouter(tx, f.RouterID)
	})
	return out, err
}

// checkForwarding validates a port forwarding against its floating IP and
// internal port, and sets the floating IP's router.
func (s *Service) checkForwarding(tx *nsdb.Tx, c *identity.Context, f *FloatingIP, pf *PortForwarding) error {
	if err := checkRanges(tx, f, pf); err != nil {
		return err
	}
	if f.PortID != "" {
		return inUse("FipInUseByPortForwarding", "Floating IP %s is associated with port %s; a floating IP with a port cannot have port forwardings.", f.ID, f.PortID)
	}
	p, err := get[*Port](tx, c, pf.InternalPortID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(p.FixedIPs, func(x FixedIP) bool { return x.IPAddress == pf.InternalIPAddress })
	if i < 0 {
		return BadResourceRequest("port_forwarding", "Port %s does not have ip address %s", p.ID, pf.InternalIPAddress)
	}
	if fips, err := tx.List(FloatingIPKind, "port_id", p.ID); err != nil {
		return err
	} else {
		for _, o := range fips {
			if o.(*FloatingIP).FixedIPAddress == pf.InternalIPAddress {
				return inUse("PortHasBindingFloatingIP", "Cannot create port forwarding to floating IP %s (%s) with port %s using fixed IP %s, as that port already has a binding floating IP.",
					f.FloatingIPAddress, f.ID, p.ID, pf.InternalIPAddress)
			}
		}
	}
	routerID, err := s.routerFor(tx, f.FloatingNetworkID, p.FixedIPs[i].SubnetID)
	if err != nil {
		return err
	}
	if routerID == "" || (f.RouterID != "" && f.RouterID != routerID) {
		return BadResourceRequest("port_forwarding", "Port %s 's network %s not bind on router %s", p.ID, p.NetworkID, f.RouterID)
	}
	owner, err := tx.UniqueOwner(PortForwardingKind, PortForwardingKind.Field("external_key"), f.ID, pf.ExternalKey)
	if err != nil {
		return err
	}
	if owner != "" && owner != pf.ID {
		return BadResourceRequest("port_forwarding", "A duplicate port forwarding entry with same attributes already exists, conflicting values are {'floatingip_id': '%s', 'external_port': %d, 'protocol': '%s'}", f.ID, pf.ExternalPort, pf.Protocol)
	}
	if f.RouterID != routerID {
		f.RouterID = routerID
		setFIPStatus(f)
		s.touch(&f.Std)
		return tx.Put(f)
	}
	return nil
}

// getForwarding reads a floating IP the caller may see and one of its port
// forwardings (a forwarding of another floating IP is not found), for a
// write when action is not "".
func (s *Service) getForwarding(tx *nsdb.Tx, c *identity.Context, fipID, id, action string) (*FloatingIP, *PortForwarding, error) {
	f, err := get[*FloatingIP](tx, c, fipID)
	if err != nil {
		return nil, nil, err
	}
	o, err := tx.Get(PortForwardingKind, id)
	if errors.Is(err, model.ErrNotFound) || (err == nil && o.(*PortForwarding).FloatingIPID != fipID) {
		return nil, nil, NotFoundError(PortForwardingKind, id)
	}
	if err != nil {
		return nil, nil, err
	}
	if action != "" {
		if err := may(c, action); err != nil {
			return nil, nil, err
		}
	}
	return f, o.(*PortForwarding), nil
}

// GetPortForwarding reads one port forwarding of a floating IP.
func (s *Service) GetPortForwarding(ctx context.Context, c *identity.Context, fipID, id string) (*PortForwarding, error) {
	var out *PortForwarding
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		var err error
		_, out, err = s.getForwarding(tx, c, fipID, id, "")
		return err
	})
	return out, err
}

// ListPortForwardings lists a floating IP's port forwardings.
func (s *Service) ListPortForwardings(ctx context.Context, c *identity.Context, fipID string) ([]*PortForwarding, error) {
	var out []*PortForwarding
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		if _, err := get[*FloatingIP](tx, c, fipID); err != nil {
			return err
		}
		objs, err := tx.List(PortForwardingKind, "floatingip_id", fipID)
		for _, o := range objs {
			out = append(out, o.(*PortForwarding))
		}
		return err
	})
	return out, err
}

// UpdatePortForwarding changes a port forwarding.
func (s *Service) UpdatePortForwarding(ctx context.Context, c *identity.Context, fipID, id string, r PortForwardingRequest) (*PortForwarding, error) {
	var out *PortForwarding
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		f, pf, err := s.getForwarding(tx, c, fipID, id, "update_floatingip_port_forwarding")
		if err != nil {
			return err
		}
		r.apply(pf)
		if err := s.checkForwarding(tx, c, f, pf); err != nil {
			return err
		}
		s.touch(&pf.Std)
		if err := tx.Put(pf); err != nil {
			return err
		}
		out = pf
		return s.retranslateRouter(tx, f.RouterID)
	})
	return out, err
}

// DeletePortForwarding deletes a port forwarding; the floating IP's last
// one leaves it without a router.
func (s *Service) DeletePortForwarding(ctx context.Context, c *identity.Context, fipID, id string) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		f, _, err := s.getForwarding(tx, c, fipID, id, "delete_floatingip_port_forwarding")
		if err != nil {
			return err
		}
		if err := tx.Delete(PortForwardingKind, id); err != nil {
			return err
		}
		router := f.RouterID
		rest, err := tx.List(PortForwardingKind, "floatingip_id", fipID)
		if err != nil {
			return err
		}
		if len(rest) == 0 && f.PortID == "" {
			f.RouterID = ""
			setFIPStatus(f)
			s.touch(&f.Std)
			if err := tx.Put(f); err != nil {
				return err
			}
		}
		return s.retranslateRouter(tx, router)
	})
	return err
}
