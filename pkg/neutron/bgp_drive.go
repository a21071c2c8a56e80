package neutron

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// A speaker drives the native BGP model (model.BGPPeer, model.BGPNetwork
// and a router's ASN, what `router R set asn`, `router R port P add
// bgp-peer` and `router R add bgp-network` write), as networking-midonet's
// BGP driver did: Neutron's dr-agent model (an announce-only speaker whose
// routes have the tenant routers' gateways as next hops) becomes the
// provider routers' uplink speakers.
//
//	speaker (local_as)            the ASN of each provider router of its gateway
//	                              networks: a native router (not a Neutron one)
//	                              linked into the network's bridge, whose other
//	                              ports are its uplinks
//	peer added to the speaker     a bgp-peer (remote_as, peer_ip) on the provider
//	                              router's uplink port whose network holds peer_ip
//	advertised routes             bgp-networks of the provider router, and routes
//	                              to them through its port into the gateway
//	                              network, next hop the tenant router's gateway
//
// The translation is the speaker's (its Translation lists what it wrote;
// the routers whose ASN it set are in ASNRouters), so removing a peer, a
// network or the speaker removes exactly that, in the request's
// transaction. What a user created natively is never rewritten: a router
// with another ASN, or a peer at the same address, refuses the request
// (409); a bgp-network the router already announces is left to its owner.

// ProviderRouter is a native router that carries a gateway network's
// traffic to its uplinks.
type ProviderRouter struct {
	Router    *model.Router
	NetworkID string        // the gateway network
	ExtPort   *model.Port   // the router's port linked into the network's bridge
	Uplinks   []*model.Port // its ports linked to no other port
}

// SpeakerInput is what a speaker's translation reads.
type SpeakerInput struct {
	Speaker   *BGPSpeaker
	Peers     []*BGPPeer
	Providers []ProviderRouter
	Routes    []AdvertisedRoute
}

func speakerPeerID(sp, peer, router string) string {
	return DerivedID("bgp-speaker-peer", sp, peer, router)
}
func speakerNetworkID(sp, router string, dst netip.Prefix) string {
	return DerivedID("bgp-speaker-network", sp, router, dst.String())
}
func speakerRouteID(sp, router string, r AdvertisedRoute) string {
	return DerivedID("bgp-speaker-route", sp, router, r.Destination.String(), r.NextHop.String())
}

// TranslateBGPSpeaker returns a speaker's native form. Peers it cannot
// translate (an address no uplink reaches, a password no TCP MD5 key can
// be) are left out and reported in the error, the first such; a caller
// acting on the speaker refuses them, one re-translating after another
// change keeps the rest. A peer's password signs its session only with
// auth_type md5, as in Neutron.
func TranslateBGPSpeaker(in SpeakerInput) ([]model.Object, error) {
	sp := in.Speaker
	var out []model.Object
	var problem error
	if len(in.Providers) == 0 {
		return nil, nil
	}
	for _, pr := range in.Providers {
		seen := map[netip.Prefix]bool{}
		for _, r := range in.Routes {
			if r.network != pr.NetworkID {
				continue
			}
			if !seen[r.Destination] {
				seen[r.Destination] = true
				out = append(out, &model.BGPNetwork{Meta: model.Meta{ID: speakerNetworkID(sp.ID, pr.Router.ID, r.Destination)},
					RouterID: pr.Router.ID, Network: r.Destination})
			}
			// The way in: through the tenant router's gateway, when the
			// router's port into the network reaches it (an operator's
			// port on another subnet would make a route nowhere).
			if pr.ExtPort.Network.Contains(r.NextHop) {
				out = append(out, &model.Route{Meta: model.Meta{ID: speakerRouteID(sp.ID, pr.Router.ID, r)}, RouterID: pr.Router.ID,
					Type: model.RouteNormal, Dst: r.Destination, Gateway: r.NextHop, PortID: pr.ExtPort.ID})
			}
		}
	}
	for _, p := range in.Peers {
		if p.PeerIP.Is4() != (sp.IPVersion == 4) {
			continue
		}
		password := ""
		if p.AuthType == "md5" {
			password = p.Password
			if err := model.CheckBGPPassword(password); err != nil {
				if problem == nil {
					problem = NewError(BadRequest, "InvalidBgpPeerMd5Authentication", "BGP peer %s: %v", p.ID, err)
				}
				continue
			}
		}
		found := false
		for _, pr := range in.Providers {
			for _, u := range pr.Uplinks {
				if u.Network.Contains(p.PeerIP) && u.Address != p.PeerIP {
					found = true
					out = append(out, &model.BGPPeer{Meta: model.Meta{ID: speakerPeerID(sp.ID, p.ID, pr.Router.ID)},
						RouterID: pr.Router.ID, PortID: u.ID, ASN: uint32(p.RemoteAS), Address: p.PeerIP, Password: password})
					break
				}
			}
		}
		if !found && problem == nil {
			var names []string
			for _, pr := range in.Providers {
				names = append(names, pr.Router.ID)
			}
			problem = NewError(BadRequest, "InvalidBgpPeer",
				"BGP peer %s: peer_ip %s is on no uplink port of the provider routers %s of BGP speaker %s's gateway networks; BGP peers are one hop away",
				p.ID, p.PeerIP, strings.Join(names, ", "), sp.ID)
		}
	}
	return out, problem
}

// speakerRoutes are the routes a speaker announces: for each gateway
// port of a router on one of its gateway networks, the router's interface
// subnets (advertise_tenant_networks) and its floating IPs on that network
// (advertise_floating_ip_host_routes), next hop the gateway port's address
// of the speaker's IP version. It reads ports, not routers: a router's
// translation calls it before the router itself is written.
func speakerRoutes(tx *nsdb.Tx, sp *BGPSpeaker) ([]AdvertisedRoute, error) {
	var out []AdvertisedRoute
	for _, netID := range sp.Networks {
		onNet, err := listOf[*Port](tx, "network_id", netID)
		if err != nil {
			return nil, err
		}
		var gws []*Port
		for _, p := range onNet {
			if p.DeviceOwner == OwnerRouterGateway && p.RouterID != "" {
				gws = append(gws, p)
			}
		}
		slices.SortFunc(gws, func(a, b *Port) int { return strings.Compare(a.RouterID+a.ID, b.RouterID+b.ID) })
		for _, g := range gws {
			var hop netip.Addr
			for _, f := range g.FixedIPs {
				if f.IPAddress.Is4() == (sp.IPVersion == 4) {
					hop = f.IPAddress
				}
			}
			if !hop.IsValid() {
				continue
			}
			if sp.AdvertiseTenantNetwork {
				ports, err := listOf[*Port](tx, "router_id", g.RouterID)
				if err != nil {
					return nil, err
				}
				_, subs, err := interfaces(tx, ports)
				if err != nil {
					return nil, err
				}
				for _, sub := range sortedSubnets(subs) {
					if sub.NetworkID != netID && sub.IPVersion == sp.IPVersion {
						out = append(out, AdvertisedRoute{sub.CIDR, hop, netID})
					}
				}
			}
			if sp.AdvertiseFloatingIPs {
				fips, err := listOf[*FloatingIP](tx, "router_id", g.RouterID)
				if err != nil {
					return nil, err
				}
				for _, f := range fips {
					if f.FloatingNetworkID == netID && f.FloatingIPAddress.Is4() == (sp.IPVersion == 4) {
						out = append(out, AdvertisedRoute{netip.PrefixFrom(f.FloatingIPAddress, f.FloatingIPAddress.BitLen()), hop, netID})
					}
				}
			}
		}
	}
	return out, nil
}

// providerRouters are the native routers linked into the bridges of the
// gateway networks, with their uplinks. Neutron's own routers are not
// among them: they are the tenant routers whose routes are announced.
func providerRouters(tx *nsdb.Tx, networks []string) ([]ProviderRouter, error) {
	var out []ProviderRouter
	for _, netID := range networks {
		bps, err := tx.List(model.PortKind, "bridge_id", netID)
		if err != nil {
			return nil, err
		}
		for _, o := range bps {
			bp := o.(*model.Port)
			if bp.PeerID == "" {
				continue
			}
			po, err := tx.Get(model.PortKind, bp.PeerID)
			if errors.Is(err, model.ErrNotFound) {
				continue
			} else if err != nil {
				return nil, err
			}
			ext := po.(*model.Port)
			if ext.RouterID == "" {
				continue
			}
			if _, err := tx.Get(RouterKind, ext.RouterID); err == nil {
				continue // a Neutron router: a tenant router
			} else if !errors.Is(err, model.ErrNotFound) {
				return nil, err
			}
			ro, err := tx.Get(model.RouterKind, ext.RouterID)
			if err != nil {
				return nil, err
			}
			pr := ProviderRouter{Router: ro.(*model.Router), NetworkID: netID, ExtPort: ext}
			ports, err := tx.List(model.PortKind, "router_id", ext.RouterID)
			if err != nil {
				return nil, err
			}
			for _, q := range ports {
				if u := q.(*model.Port); u.PeerID == "" {
					pr.Uplinks = append(pr.Uplinks, u)
				}
			}
			out = append(out, pr)
		}
	}
	return out, nil
}

// translateSpeaker reconciles a speaker's native form in tx. strict (a
// request on the speaker or its peers) refuses what cannot be translated;
// otherwise (another object's change re-translating it) that is left out.
// The caller writes sp (its ASNRouters may change).
func (s *Service) translateSpeaker(tx *nsdb.Tx, sp *BGPSpeaker, strict bool) error {
	in := SpeakerInput{Speaker: sp}
	for _, id := range sp.Peers {
		o, err := tx.Get(BGPPeerKind, id)
		if errors.Is(err, model.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		in.Peers = append(in.Peers, o.(*BGPPeer))
	}
	var err error
	if in.Routes, err = speakerRoutes(tx, sp); err != nil {
		return err
	}
	providers, err := providerRouters(tx, sp.Networks)
	if err != nil {
		return err
	}
	asn := uint32(sp.LocalAS)
	for _, pr := range providers {
		if pr.Router.ASN != 0 && pr.Router.ASN != asn {
			if strict {
				return conflict("BgpSpeakerLocalAsConflict", "local_as %d of BGP speaker %s: router %s already speaks BGP as AS %d",
					asn, sp.ID, pr.Router.ID, pr.Router.ASN)
			}
			continue
		}
		in.Providers = append(in.Providers, pr)
	}
	want, problem := TranslateBGPSpeaker(in)
	if problem != nil && strict {
		return problem
	}
	if want, err = s.notClobbering(tx, sp, want, strict); err != nil {
		return err
	}
	// The routers' ASNs first: a BGP peer needs its router's.
	targets := map[string]bool{}
	for _, pr := range in.Providers {
		targets[pr.Router.ID] = true
		if pr.Router.ASN == 0 {
			if _, err := tx.Modify(model.RouterKind, pr.Router.ID, 0, func(o model.Object) error {
				o.(*model.Router).ASN = asn
				return nil
			}); err != nil {
				return fmt.Errorf("neutron: set the asn of router %s: %w", pr.Router.ID, err)
			}
			sp.ASNRouters = append(sp.ASNRouters, pr.Router.ID)
		}
	}
	if err := apply(tx, &sp.Std, want); err != nil {
		return err
	}
	// A router the speaker no longer drives loses the ASN the speaker
	// gave it, unless someone else's BGP peers now use it.
	var kept []string
	for _, id := range sp.ASNRouters {
		if targets[id] {
			if !slices.Contains(kept, id) {
				kept = append(kept, id)
			}
			continue
		}
		o, err := tx.Get(model.RouterKind, id)
		if errors.Is(err, model.ErrNotFound) {
			continue
		} else if err != nil {
			return err
		}
		peers, err := tx.List(model.BGPPeerKind, "router_id", id)
		if err != nil {
			return err
		}
		if o.(*model.Router).ASN != asn || len(peers) > 0 {
			continue
		}
		if _, err := tx.Modify(model.RouterKind, id, 0, func(o model.Object) error {
			o.(*model.Router).ASN = 0
			return nil
		}); err != nil {
			return fmt.Errorf("neutron: clear the asn of router %s: %w", id, err)
		}
	}
	slices.Sort(kept)
	sp.ASNRouters = kept
	return nil
}

// notClobbering drops from a speaker's translation what would take the
// place of a native object someone else created: a BGP peer at an
// address the router already peers with (refused when strict), a BGP
// network the router already announces.
func (s *Service) notClobbering(tx *nsdb.Tx, sp *BGPSpeaker, want []model.Object, strict bool) ([]model.Object, error) {
	out := want[:0]
	for _, o := range want {
		var owner string
		var err error
		switch x := o.(type) {
		case *model.BGPPeer:
			owner, err = tx.UniqueOwner(model.BGPPeerKind, model.BGPPeerKind.Field("address"), x.RouterID, x.Address.String())
			if err == nil && owner != "" && owner != x.ID && strict {
				return nil, conflict("DuplicateBgpPeerIpException", "peer_ip %s: router %s already peers with %s (bgp-peer %s, not BGP speaker %s's)",
					x.Address, x.RouterID, x.Address, owner, sp.ID)
			}
		case *model.BGPNetwork:
			owner, err = tx.UniqueOwner(model.BGPNetworkKind, model.BGPNetworkKind.Field("network"), x.RouterID, x.Network.String())
		}
		if err != nil {
			return nil, err
		}
		if owner != "" && owner != o.GetMeta().ID {
			continue
		}
		out = append(out, o)
	}
	return out, nil
}

// syncSpeakers re-translates the speakers with gateway networks after a
// change to what they announce (a router's interfaces, gateway or
// floating IPs).
func (s *Service) syncSpeakers(tx *nsdb.Tx) error {
	sps, err := listOf[*BGPSpeaker](tx, "", "")
	if err != nil {
		return err
	}
	for _, sp := range sps {
		if len(sp.Networks) == 0 && len(sp.ASNRouters) == 0 {
			continue
		}
		before := slices.Clone(sp.ASNRouters)
		if err := s.translateSpeaker(tx, sp, false); err != nil {
			return fmt.Errorf("neutron: re-translate BGP speaker %s: %w", sp.ID, err)
		}
		if !slices.Equal(before, sp.ASNRouters) {
			if err := tx.Put(sp); err != nil {
				return err
			}
		}
	}
	return nil
}
