package neutron

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// NetworkRequest is what a create or update of a network asks.
type NetworkRequest struct {
	StdRequest
	AdminStateUp        *bool
	Shared              *bool
	External            *bool
	PortSecurityEnabled *bool
	MTU                 *int // nil: not given, or null (the network type's maximum)
	// Provider is the provider segment (provider:* or a single entry of
	// segments); non-nil whenever the request names any of it.
	Provider        *Segment
	DNSDomain       *string // checked with ValidDNSDomain
	VLANTransparent *bool   // create only
	QoSPolicyID     *string // "": none
}

// Segment is a network's requested provider segment.
type Segment struct {
	NetworkType     *string
	PhysicalNetwork *string
	SegmentationID  *int // nil: not given, null or 0 (none, as ML2 reads 0)
}

func (r *NetworkRequest) apply(n *Network) {
	r.StdRequest.apply(&n.Std)
	set(&n.AdminStateUp, r.AdminStateUp)
	set(&n.Shared, r.Shared)
	set(&n.External, r.External)
	set(&n.PortSecurityEnabled, r.PortSecurityEnabled)
	set(&n.DNSDomain, r.DNSDomain)
	set(&n.VLANTransparent, r.VLANTransparent)
	set(&n.QoSPolicyID, r.QoSPolicyID)
}

// Encapsulation overheads Neutron subtracts from global_physnet_mtu.
const (
	vxlanOverhead = 50
	greOverhead   = 42
	maxVXLANID    = 1<<24 - 1
)

func (s *Service) maxMTU(netType string) int {
	switch netType {
	case "vxlan", "geneve":
		// The wire encapsulation of every overlay network is the tunnel
		// zone's (VXLAN or GRE); a geneve network is an overlay segment
		// like the others.
		return s.mtu - vxlanOverhead
	case "gre":
		return s.mtu - greOverhead
	}
	return s.mtu
}

// segment checks the provider segment of a new network, as ML2's type
// drivers do, and fills the MTU.
func (s *Service) segment(n *Network, r *NetworkRequest) error {
	seg := r.Provider
	if seg == nil {
		seg = &Segment{}
	}
	typ, hasType := deref(seg.NetworkType)
	phys, hasPhys := deref(seg.PhysicalNetwork)
	id, hasSeg := deref(seg.SegmentationID)
	if !hasType {
		if hasPhys || hasSeg {
			return InvalidInput("network_type required")
		}
		typ = "vxlan"
	}
	n.NetworkType = typ
	switch typ {
	case "vxlan", "gre", "geneve":
		if hasPhys && phys != "" {
			return InvalidInput("provider:physical_network specified for %s network", strings.ToUpper(typ))
		}
		max := maxVXLANID
		if typ == "gre" {
			max = 1<<32 - 1
		}
		if hasSeg && (id < 1 || id > max) {
			return InvalidInput("%s out of range (1 through %d)", seg2str(id), max)
		}
		if hasSeg {
			n.SegmentationID = id
		}
	case "vlan":
		if !hasPhys || phys == "" {
			return InvalidInput("physical_network required for VLAN provider network")
		}
		if !hasSeg {
			return InvalidInput("segmentation_id required for VLAN provider network")
		}
		if id < 1 || id > 4094 {
			return InvalidInput("segmentation_id out of range (1 through 4094)")
		}
		n.PhysicalNetwork, n.SegmentationID = phys, id
	case "flat":
		if !hasPhys || phys == "" {
			return InvalidInput("physical_network required for flat provider network")
		}
		if hasSeg {
			return InvalidInput("segmentation_id specified for flat provider network")
		}
		n.PhysicalNetwork = phys
	default:
		return InvalidInput("network_type value '%s' not supported", typ)
	}
	n.MTU = s.maxMTU(typ)
	return s.setMTU(n, r.MTU)
}

// setMTU checks and sets a requested MTU (nil: leave it).
func (s *Service) setMTU(n *Network, mtu *int) error {
	switch {
	case mtu == nil:
		return nil
	case *mtu < 68:
		return Invalid("mtu", "'%d' is too small - must be at least '68'", *mtu)
	case *mtu > s.maxMTU(n.NetworkType):
		return InvalidInput("Requested MTU is too big, maximum is %d", s.maxMTU(n.NetworkType))
	}
	n.MTU = *mtu
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
	auto := (n.NetworkType == "vxlan" || n.NetworkType == "gre" || n.NetworkType == "geneve") && n.SegmentationID == 0
	for try := 0; ; try++ {
		if auto {
			n.SegmentationID = 1 + rand.IntN(maxVXLANID)
		}
		n.Segment = n.segmentKey()
		owner, err := tx.UniqueOwner(NetworkKind, f, "", n.Segment)
		if err != nil {
			return err
		}
		if owner == "" {
			// The extra segments of networks (segment) share the space.
			if owner, err = tx.UniqueOwner(NetSegmentKind, NetSegmentKind.Field("key"), "", n.Segment); err != nil {
				return err
			}
		}
		switch {
		case owner == "" || owner == n.ID:
			return nil
		case auto && try < 16:
			continue
		case auto:
			return NewError(Unavailable, "NoNetworkAvailable", "Unable to create the network. No tenant network is available for allocation.")
		case n.NetworkType == "vlan":
			return inUse("VlanIdInUse", "Unable to create the network. The VLAN %d on physical network %s is in use.", n.SegmentationID, n.PhysicalNetwork)
		case n.NetworkType == "flat":
			return inUse("FlatNetworkInUse", "Unable to create the flat network. Physical network %s is in use.", n.PhysicalNetwork)
		}
		return inUse("TunnelIdInUse", "Unable to create the network. The tunnel ID %d is in use.", n.SegmentationID)
	}
}

// CreateNetwork creates a network and its bridge.
func (s *Service) CreateNetwork(ctx context.Context, c *identity.Context, r NetworkRequest) (*Network, error) {
	cr, err := s.PrepareNetwork(c, r)
	return created[*Network](ctx, s, cr, err)
}

// PrepareNetwork checks a network's create.
func (s *Service) PrepareNetwork(c *identity.Context, r NetworkRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_network")
	if err != nil {
		return nil, err
	}
	n := &Network{Std: st, AdminStateUp: true, PortSecurityEnabled: true}
	r.apply(n)
	if err := s.segment(n, &r); err != nil {
		return nil, err
	}
	return creation(st.ProjectID, "network", func(tx *nsdb.Tx) (model.Object, error) {
		x := *n
		x.ID = newID()
		if err := claimSegment(tx, &x); err != nil {
			return nil, err
		}
		if r.QoSPolicyID == nil {
			// The project's default QoS policy (qos-default).
			def, err := tx.UniqueOwner(QoSPolicyKind, QoSPolicyKind.Field("default_of"), "", x.ProjectID)
			if err != nil {
				return nil, err
			}
			x.QoSPolicyID = def
		}
		if err := s.usableQoS(tx, c, x.QoSPolicyID, "network", x.ID); err != nil {
			return nil, err
		}
		o, err := createWith(tx, &x, TranslateNetwork(&x))
		if err != nil {
			return nil, err
		}
		// The wildcard RBAC policies shared and router:external stand for.
		if x.Shared {
			if err := s.setWildcard(tx, "network", x.ID, x.ProjectID, AccessShared, true); err != nil {
				return nil, err
			}
		}
		if x.External {
			if err := s.setWildcard(tx, "network", x.ID, x.ProjectID, AccessExternal, true); err != nil {
				return nil, err
			}
		}
		return o, nil
	}), nil
}

// networkVisible is Neutron's get_network policy without the targeted RBAC
// policies (Reader.visible adds them): owner, shared or external to all.
func networkVisible(c *identity.Context, n *Network) bool {
	return owns(c, &n.Std) || n.Shared || (n.External && !n.ExternalTargeted)
}

// UpdateNetwork changes a network's writable attributes. Provider
// attributes cannot change (ML2's answer); an external network that
// routers use as their gateway cannot stop being external; a shared
// network other projects have ports on cannot stop being shared.
func (s *Service) UpdateNetwork(ctx context.Context, c *identity.Context, id string, r NetworkRequest, ifRev int64) (*Network, error) {
	return modify(ctx, s, c, id, "update_network", ifRev, func(tx *nsdb.Tx, n *Network) error {
		was := *n
		r.apply(n)
		if r.Provider != nil {
			return InvalidInput("Plugin does not support updating provider attributes")
		}
		if err := s.setMTU(n, r.MTU); err != nil {
			return err
		}
		if err := s.networkSharing(tx, &was, n, r.External != nil && *r.External); err != nil {
			return err
		}
		qosChanged := r.QoSPolicyID != nil && n.QoSPolicyID != was.QoSPolicyID
		if qosChanged {
			if err := s.usableQoS(tx, c, n.QoSPolicyID, "network", id); err != nil {
				return err
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
		if err := tx.Put(n); err != nil {
			return err
		}
		if qosChanged {
			// Its ports without a policy of their own take it.
			return s.retranslatePorts(tx, c, id)
		}
		return nil
	})
}

// networkSharing applies a change of shared or router:external (toAll: the
// request sets router:external): the wildcard RBAC policies they stand for
// are created or removed, and a project that uses the network keeps the
// access it depends on.
func (s *Service) networkSharing(tx *nsdb.Tx, was, n *Network, toAll bool) error {
	id := n.ID
	if was.External && !n.External {
		gws, err := tx.List(RouterKind, "gw_network_id", id)
		if err != nil {
			return err
		}
		if len(gws) > 0 {
			return inUse("ExternalNetworkInUse", "External network %s cannot be updated to be made non-external, since it has existing gateway ports.", id)
		}
		pols, err := rbacPolicies(tx, "network", id)
		if err != nil {
			return err
		}
		for _, p := range pols {
			if p.Action == AccessExternal {
				if err := tx.Delete(RBACPolicyKind, p.ID); err != nil {
					return err
				}
			}
		}
		n.ExternalTargeted = false
	}
	if toAll && (!was.External || was.ExternalTargeted) {
		if err := s.setWildcard(tx, "network", id, n.ProjectID, AccessExternal, true); err != nil {
			return err
		}
		n.ExternalTargeted = false
	}
	if was.Shared == n.Shared {
		return nil
	}
	if !n.Shared {
		pols, err := rbacPolicies(tx, "network", id)
		if err != nil {
			return err
		}
		pols = slices.DeleteFunc(pols, func(p *RBACPolicy) bool { return p.Target == AnyProject })
		ports, err := listOf[*Port](tx, "network_id", id)
		if err != nil {
			return err
		}
		for _, p := range ports {
			if p.ProjectID != n.ProjectID && p.ProjectID != "" && !strings.HasPrefix(p.DeviceOwner, ownerNetworkPrefix) &&
				!grants(pols, AccessShared, p.ProjectID) {
				return conflict("InvalidSharedSetting", "Unable to reconfigure sharing settings for network %s. Multiple tenants are using it.", id)
			}
		}
	}
	return s.setWildcard(tx, "network", id, n.ProjectID, AccessShared, n.Shared)
}

// retranslatePorts rewrites the translations of a network's ports (after
// a change of the network that they carry, such as its QoS policy).
func (s *Service) retranslatePorts(tx *nsdb.Tx, c *identity.Context, netID string) error {
	ports, err := listOf[*Port](tx, "network_id", netID)
	if err != nil {
		return err
	}
	for _, p := range ports {
		if err := s.writePort(tx, c, p, PortRequest{}, false); err != nil {
			return err
		}
	}
	return nil
}

// autoDeletePortOwners are the ports deleting a network deletes with it
// (neutron's AUTO_DELETE_PORT_OWNERS); any other port keeps it in use.
var autoDeletePortOwners = map[string]bool{OwnerDHCP: true, "network:router_ha_interface": true, "network:distributed": true}

// DeleteNetwork deletes a network with its subnets, refusing while ports
// are on it.
func (s *Service) DeleteNetwork(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_network", ifRev, func(tx *nsdb.Tx, n *Network) error {
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
		segs, err := listOf[*NetSegment](tx, "network_id", id)
		if err != nil {
			return err
		}
		for _, seg := range segs {
			if err := apply(tx, &seg.Std, nil); err != nil {
				return err
			}
			if err := tx.Delete(NetSegmentKind, seg.ID); err != nil {
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
