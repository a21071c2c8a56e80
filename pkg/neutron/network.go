package neutron

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

var networkSpec = std.with(spec{
	"name":                      {post: true, put: true},
	"admin_state_up":            {post: true, put: true},
	"status":                    {},
	"subnets":                   {},
	"shared":                    {post: true, put: true, adminSet: true},
	"router:external":           {post: true, put: true, adminSet: true},
	"mtu":                       {post: true, put: true},
	"port_security_enabled":     {post: true, put: true},
	"provider:network_type":     {post: true, put: true, adminSet: true, adminView: true},
	"provider:physical_network": {post: true, put: true, adminSet: true, adminView: true},
	"provider:segmentation_id":  {post: true, put: true, adminSet: true, adminView: true},
	"segments":                  {post: true, adminSet: true, adminView: true},
	"availability_zone_hints":   {post: true},
	"availability_zones":        {},
	"ipv4_address_scope":        {},
	"ipv6_address_scope":        {},
	"l2_adjacency":              {},
	"is_default":                {},
})

// Encapsulation overheads Neutron subtracts from global_physnet_mtu.
const (
	vxlanOverhead = 50
	greOverhead   = 42
	maxVXLANID    = 1<<24 - 1
)

func (s *Service) maxMTU(netType string) int {
	switch netType {
	case "vxlan":
		return s.mtu - vxlanOverhead
	case "gre":
		return s.mtu - greOverhead
	}
	return s.mtu
}

func (n *Network) decode(b Body) error {
	if err := decodeStd(b, &n.Std); err != nil {
		return err
	}
	if v, ok, err := b.str("name", 255); err != nil {
		return err
	} else if ok {
		n.Name = v
	}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"admin_state_up", &n.AdminStateUp}, {"shared", &n.Shared}, {"router:external", &n.External}, {"port_security_enabled", &n.PortSecurityEnabled}} {
		if v, ok, err := b.boolean(f.name); err != nil {
			return err
		} else if ok {
			*f.dst = v
		}
	}
	if hints, ok := b["availability_zone_hints"]; ok && string(hints) != "[]" && string(hints) != "null" {
		return invalidInput("availability zones are not implemented: availability_zone_hints must be empty")
	}
	return nil
}

// segment reads and checks the provider attributes of a new network, as
// ML2's type drivers do, and fills the MTU.
func (s *Service) segment(n *Network, b Body) error {
	orig := b
	if b.has("segments") {
		// The multi-provider form with one segment is the provider form
		// (gophercloud's provider extension sends it).
		var segs []Body
		if _, err := b.raw("segments", &segs, "not a list of segments"); err != nil {
			return err
		}
		for _, k := range []string{"provider:network_type", "provider:physical_network", "provider:segmentation_id"} {
			if b.has(k) {
				return invalidInput("Segments and provider values cannot both be set.")
			}
		}
		if len(segs) != 1 {
			return invalidInput("networks of several segments are not implemented: give one segment")
		}
		b = Body{}
		for k, v := range segs[0] {
			b[k] = v
		}
	}
	typ, hasType, err := b.str("provider:network_type", 0)
	if err != nil {
		return err
	}
	phys, hasPhys, err := b.str("provider:physical_network", 64)
	if err != nil {
		return err
	}
	seg, segNull, hasSeg, err := b.integer("provider:segmentation_id")
	if err != nil {
		return err
	}
	// 0 means none, as Python's truthiness makes it in ML2's type drivers
	// (gophercloud sends it for flat segments).
	hasSeg = hasSeg && !segNull && seg != 0
	if !hasType {
		if hasPhys || hasSeg {
			return invalidInput("network_type required")
		}
		typ = "vxlan"
	}
	n.NetworkType = typ
	switch typ {
	case "vxlan", "gre":
		if hasPhys && phys != "" {
			return invalidInput("provider:physical_network specified for %s network", strings.ToUpper(typ))
		}
		max := maxVXLANID
		if typ == "gre" {
			max = 1<<32 - 1
		}
		if hasSeg && (seg < 1 || seg > max) {
			return invalidInput("%s out of range (1 through %d)", seg2str(seg), max)
		}
		if hasSeg {
			n.SegmentationID = seg
		}
	case "vlan":
		if !hasPhys || phys == "" {
			return invalidInput("physical_network required for VLAN provider network")
		}
		if !hasSeg {
			return invalidInput("segmentation_id required for VLAN provider network")
		}
		if seg < 1 || seg > 4094 {
			return invalidInput("segmentation_id out of range (1 through 4094)")
		}
		n.PhysicalNetwork, n.SegmentationID = phys, seg
	case "flat":
		if !hasPhys || phys == "" {
			return invalidInput("physical_network required for flat provider network")
		}
		if hasSeg {
			return invalidInput("segmentation_id specified for flat provider network")
		}
		n.PhysicalNetwork = phys
	default:
		return invalidInput("network_type value '%s' not supported", typ)
	}
	max := s.maxMTU(typ)
	mtu, null, has, err := orig.integer("mtu")
	if err != nil {
		return err
	}
	switch {
	case !has || null:
		n.MTU = max
	case mtu < 68:
		return invalid("mtu", "'%d' is too small - must be at least '68'", mtu)
	case mtu > max:
		return invalidInput("Requested MTU is too big, maximum is %d", max)
	default:
		n.MTU = mtu
	}
	return nil
}

func seg2str(n int) string { return fmt.Sprintf("segmentation_id %d", n) }

func (n *Network) segmentKey() string {
	switch n.NetworkType {
	case "vlan":
		return fmt.Sprintf("vlan:%s:%d", n.PhysicalNetwork, n.SegmentationID)
	case "flat":
		return "flat:" + n.PhysicalNetwork
	}
	return fmt.Sprintf("%s:%d", n.NetworkType, n.SegmentationID)
}

// claimSegment checks (or, for an overlay network without one, picks) the
// network's segment against the other networks'.
func claimSegment(tx *nsdb.Tx, n *Network) error {
	f := NetworkKind.Field("segment")
	auto := (n.NetworkType == "vxlan" || n.NetworkType == "gre") && n.SegmentationID == 0
	for try := 0; ; try++ {
		if auto {
			n.SegmentationID = 1 + rand.IntN(maxVXLANID)
		}
		n.Segment = n.segmentKey()
		owner, err := tx.UniqueOwner(NetworkKind, f, "", n.Segment)
		if err != nil {
			return err
		}
		switch {
		case owner == "" || owner == n.ID:
			return nil
		case auto && try < 16:
			continue
		case auto:
			return newErr(503, "NoNetworkAvailable", "Unable to create the network. No tenant network is available for allocation.")
		case n.NetworkType == "vlan":
			return inUse("VlanIdInUse", "Unable to create the network. The VLAN %d on physical network %s is in use.", n.SegmentationID, n.PhysicalNetwork)
		case n.NetworkType == "flat":
			return inUse("FlatNetworkInUse", "Unable to create the flat network. Physical network %s is in use.", n.PhysicalNetwork)
		}
		return inUse("TunnelIdInUse", "Unable to create the network. The tunnel ID %d is in use.", n.SegmentationID)
	}
}

// CreateNetwork creates a network and its bridge.
func (s *Service) CreateNetwork(ctx context.Context, c *identity.Context, b Body) (*Network, error) {
	if err := networkSpec.check(b, true, c, "network"); err != nil {
		return nil, err
	}
	if err := may(c, "create_network"); err != nil {
		return nil, err
	}
	project, err := projectOf(b, c)
	if err != nil {
		return nil, err
	}
	n := &Network{Std: s.newStd(project), AdminStateUp: true, PortSecurityEnabled: true}
	if err := n.decode(b); err != nil {
		return nil, err
	}
	if err := s.segment(n, b); err != nil {
		return nil, err
	}
	if err := s.checkQuota(ctx, project, "network", 1); err != nil {
		return nil, err
	}
	if err := s.ensureProject(ctx, project); err != nil {
		return nil, err
	}
	var out *Network
	_, err = s.store.Update(ctx, func(tx *nsdb.Tx) error {
		x := *n
		x.ID = newID()
		if err := claimSegment(tx, &x); err != nil {
			return err
		}
		if err := apply(tx, &x.Std, TranslateNetwork(&x)); err != nil {
			return err
		}
		o, err := tx.Create(&x)
		if err == nil {
			out = o.(*Network)
		}
		return err
	})
	return out, err
}

// networkVisible is Neutron's get_network policy: owner, shared or external.
func networkVisible(c *identity.Context, n *Network) bool {
	return owns(c, &n.Std) || n.Shared || n.External
}

func (s *Service) getNetwork(tx *nsdb.Tx, c *identity.Context, id string) (*Network, error) {
	o, err := tx.Get(NetworkKind, id)
	if errors.Is(err, model.ErrNotFound) {
		return nil, networkNotFound(id)
	}
	if err != nil {
		return nil, err
	}
	n := o.(*Network)
	if !networkVisible(c, n) {
		return nil, networkNotFound(id)
	}
	return n, nil
}

// UpdateNetwork changes a network's writable attributes. Provider
// attributes cannot change (ML2's answer); an external network that
// routers use as their gateway cannot stop being external; a shared
// network other projects have ports on cannot stop being shared.
func (s *Service) UpdateNetwork(ctx context.Context, c *identity.Context, id string, b Body, ifRev int64) (*Network, error) {
	if err := networkSpec.check(b, false, c, "network"); err != nil {
		return nil, err
	}
	var out *Network
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		n, err := s.getNetwork(tx, c, id)
		if err != nil {
			return err
		}
		if err := ownsOrHidden(c, &n.Std, true, "update_network", nil); err != nil {
			return err
		}
		if err := may(c, "update_network"); err != nil {
			return err
		}
		if err := checkRevision(&n.Std, ifRev); err != nil {
			return err
		}
		was := *n
		if err := n.decode(b); err != nil {
			return err
		}
		for _, a := range []string{"provider:network_type", "provider:physical_network", "provider:segmentation_id"} {
			if b.has(a) {
				return invalidInput("Plugin does not support updating provider attributes")
			}
		}
		if mtu, null, has, err := b.integer("mtu"); err != nil {
			return err
		} else if has && !null {
			if mtu < 68 {
				return invalid("mtu", "'%d' is too small - must be at least '68'", mtu)
			}
			if max := s.maxMTU(n.NetworkType); mtu > max {
				return invalidInput("Requested MTU is too big, maximum is %d", max)
			}
			n.MTU = mtu
		}
		if was.External && !n.External {
			gws, err := tx.List(RouterKind, "gw_network_id", id)
			if err != nil {
				return err
			}
			if len(gws) > 0 {
				return inUse("ExternalNetworkInUse", "External network %s cannot be updated to be made non-external, since it has existing gateway ports.", id)
			}
		}
		if was.Shared && !n.Shared {
			ports, err := tx.List(PortKind, "network_id", id)
			if err != nil {
				return err
			}
			for _, o := range ports {
				p := o.(*Port)
				if p.ProjectID != n.ProjectID && p.ProjectID != "" && !strings.HasPrefix(p.DeviceOwner, ownerNetworkPrefix) {
					return conflict("InvalidSharedSetting", "Unable to reconfigure sharing settings for network %s. Multiple tenants are using it.", id)
				}
			}
		}
		s.touch(&n.Std)
		if err := apply(tx, &n.Std, TranslateNetwork(n)); err != nil {
			return err
		}
		if n.MTU != was.MTU {
			// The DHCP subnets hand the MTU out.
			subs, err := tx.List(SubnetKind, "network_id", id)
			if err != nil {
				return err
			}
			for _, o := range subs {
				sub := o.(*Subnet)
				if err := apply(tx, &sub.Std, TranslateSubnet(sub, n)); err != nil {
					return err
				}
				if err := tx.Put(sub); err != nil {
					return err
				}
			}
		}
		out = n
		return tx.Put(n)
	})
	return out, err
}

// autoDeletePortOwners are the ports deleting a network deletes with it
// (neutron's AUTO_DELETE_PORT_OWNERS); any other port keeps it in use.
var autoDeletePortOwners = map[string]bool{OwnerDHCP: true, "network:router_ha_interface": true, "network:distributed": true}

// DeleteNetwork deletes a network with its subnets, refusing while ports
// are on it.
func (s *Service) DeleteNetwork(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := s.store.Update(ctx, func(tx *nsdb.Tx) error {
		n, err := s.getNetwork(tx, c, id)
		if err != nil {
			return err
		}
		if err := ownsOrHidden(c, &n.Std, true, "delete_network", nil); err != nil {
			return err
		}
		if err := may(c, "delete_network"); err != nil {
			return err
		}
		if err := checkRevision(&n.Std, ifRev); err != nil {
			return err
		}
		ports, err := tx.List(PortKind, "network_id", id)
		if err != nil {
			return err
		}
		var inuse []string
		for _, o := range ports {
			if p := o.(*Port); !autoDeletePortOwners[p.DeviceOwner] {
				inuse = append(inuse, p.ID)
			}
		}
		if len(inuse) > 0 {
			e := inUse("NetworkInUse", "Unable to complete operation on network %s. There are one or more ports still in use on the network.", id)
			e.Detail = "There are one or more ports still in use on the network, id for these ports is: " + strings.Join(inuse, ",")
			return e
		}
		for _, o := range ports {
			if err := s.removePort(tx, o.(*Port)); err != nil {
				return err
			}
		}
		subs, err := tx.List(SubnetKind, "network_id", id)
		if err != nil {
			return err
		}
		for _, o := range subs {
			sub := o.(*Subnet)
			if err := apply(tx, &sub.Std, nil); err != nil {
				return err
			}
			if err := tx.Delete(SubnetKind, sub.ID); err != nil {
				return err
			}
		}
		if err := apply(tx, &n.Std, nil); err != nil {
			return err
		}
		return tx.Delete(NetworkKind, id)
	})
	return err
}
