package neutron

import (
	"context"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// BGP dynamic routing (bgp, bgp_4byte_asn): speakers announce, to their
// peers, the tenant networks behind the routers of their gateway networks
// and the floating IPs on them, with the routers' gateway addresses as
// next hops. The announcements are computed here (get_advertised_routes);
// the sessions are the provider routers' uplink speakers, which a
// speaker's translation drives (bgp_drive.go).

// BGPSpeaker is a BGP speaker.
type BGPSpeaker struct {
	Std
	LocalAS                int64    `json:"local_as"`
	IPVersion              int      `json:"ip_version"`
	AdvertiseFloatingIPs   bool     `json:"advertise_floating_ip_host_routes"`
	AdvertiseTenantNetwork bool     `json:"advertise_tenant_networks"`
	Peers                  []string `json:"peers,omitempty" nagare:"ref=neutron-bgp-peer,ondelete=nullify"`
	Networks               []string `json:"networks,omitempty" nagare:"ref=neutron-network,ondelete=nullify"`
	// ASNRouters are the native routers whose ASN the speaker's
	// translation set (bgp_drive.go), and clears when it stops driving them.
	ASNRouters []string `json:"asn_routers,omitempty" nagare:"ref=router,ondelete=nullify"`
}

// BGPPeer is a BGP peer.
type BGPPeer struct {
	Std
	PeerIP   netip.Addr `json:"peer_ip"`
	RemoteAS int64      `json:"remote_as"`
	AuthType string     `json:"auth_type"`
	Password string     `json:"password,omitempty"`
}

var (
	BGPSpeakerKind = model.RegisterInternal("neutron-bgp-speaker", "neutron-bgp-speakers", "A BGP speaker.", &BGPSpeaker{}, nil)
	BGPPeerKind    = model.RegisterInternal("neutron-bgp-peer", "neutron-bgp-peers", "A BGP peer.", &BGPPeer{}, nil)
)

// MaxASN is the largest AS number (bgp_4byte_asn).
const MaxASN = 1<<32 - 1

// BGPSpeakerRequest is what a create or update of a speaker asks.
type BGPSpeakerRequest struct {
	StdRequest
	LocalAS                                int64 // create only
	IPVersion                              int   // create only
	AdvertiseFloatingIPs, AdvertiseTenants *bool
}

// BGPPeerRequest is what a create or update of a peer asks.
type BGPPeerRequest struct {
	StdRequest
	PeerIP   netip.Addr // create only
	RemoteAS int64
	AuthType string
	Password *string
}

// adminOnly is the policy of BGP's writes and reads.
func adminOnly(c *identity.Context, action string) error {
	if !c.IsAdmin() {
		return PolicyNotAuthorized(action)
	}
	return nil
}

// CreateBGPSpeaker creates a speaker.
func (s *Service) CreateBGPSpeaker(ctx context.Context, c *identity.Context, r BGPSpeakerRequest) (*BGPSpeaker, error) {
	cr, err := s.PrepareBGPSpeaker(c, r)
	return created[*BGPSpeaker](ctx, s, cr, err)
}

// PrepareBGPSpeaker checks a speaker's create.
func (s *Service) PrepareBGPSpeaker(c *identity.Context, r BGPSpeakerRequest) (*Creation, error) {
	if err := adminOnly(c, "create_bgp_speaker"); err != nil {
		return nil, err
	}
	st, err := s.creating(c, &r.StdRequest, "create_bgp_speaker")
	if err != nil {
		return nil, err
	}
	sp := &BGPSpeaker{Std: st, LocalAS: r.LocalAS, IPVersion: r.IPVersion, AdvertiseFloatingIPs: true, AdvertiseTenantNetwork: true}
	r.apply(sp)
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := *sp
		x.ID = newID()
		_, err := tx.Create(&x)
		return &x, err
	}), nil
}

func (r *BGPSpeakerRequest) apply(sp *BGPSpeaker) {
	r.StdRequest.apply(&sp.Std)
	set(&sp.AdvertiseFloatingIPs, r.AdvertiseFloatingIPs)
	set(&sp.AdvertiseTenantNetwork, r.AdvertiseTenants)
}

// UpdateBGPSpeaker changes a speaker's name or what it advertises.
func (s *Service) UpdateBGPSpeaker(ctx context.Context, c *identity.Context, id string, r BGPSpeakerRequest, ifRev int64) (*BGPSpeaker, error) {
	if err := adminOnly(c, "update_bgp_speaker"); err != nil {
		return nil, err
	}
	return modify(ctx, s, c, id, "update_bgp_speaker", ifRev, func(tx *nsdb.Tx, sp *BGPSpeaker) error {
		r.apply(sp)
		s.touch(&sp.Std)
		if err := s.translateSpeaker(tx, sp, true); err != nil {
			return err
		}
		return tx.Put(sp)
	})
}

// DeleteBGPSpeaker deletes a speaker (its scheduling goes with it).
func (s *Service) DeleteBGPSpeaker(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	if err := adminOnly(c, "delete_bgp_speaker"); err != nil {
		return err
	}
	_, err := modify(ctx, s, c, id, "delete_bgp_speaker", ifRev, func(tx *nsdb.Tx, sp *BGPSpeaker) error {
		sp.Peers, sp.Networks = nil, nil
		if err := s.translateSpeaker(tx, sp, false); err != nil {
			return err
		}
		return tx.Delete(BGPSpeakerKind, id)
	})
	return err
}

// SpeakerPeer adds a peer to a speaker or removes it.
func (s *Service) SpeakerPeer(ctx context.Context, c *identity.Context, id, peer string, add bool) error {
	action := "remove_bgp_peer"
	if add {
		action = "add_bgp_peer"
	}
	if err := adminOnly(c, action); err != nil {
		return err
	}
	_, err := modify(ctx, s, c, id, action, 0, func(tx *nsdb.Tx, sp *BGPSpeaker) error {
		p, err := get[*BGPPeer](tx, c, peer)
		if err != nil {
			return err
		}
		i := slices.Index(sp.Peers, peer)
		switch {
		case add && i >= 0:
			return nil
		case add:
			for _, other := range sp.Peers {
				o, err := get[*BGPPeer](tx, c, other)
				if err == nil && o.PeerIP == p.PeerIP {
					return conflict("DuplicateBgpPeerIpException", "BGP Speaker %s is already configured to peer with a BGP Peer at %s, it cannot peer with BGP Peer %s.", id, p.PeerIP, peer)
				}
			}
			sp.Peers = append(sp.Peers, peer)
		case i < 0:
			return NewError(NotFound, "BgpSpeakerPeerNotAssociated", "BGP peer %s is not associated with BGP speaker %s.", peer, id)
		default:
			sp.Peers = slices.Delete(sp.Peers, i, i+1)
		}
		s.touch(&sp.Std)
		if err := s.translateSpeaker(tx, sp, add); err != nil {
			return err
		}
		return tx.Put(sp)
	})
	return err
}

// SpeakerNetwork adds a gateway network to a speaker or removes it; a
// network is the gateway network of one speaker per IP version.
func (s *Service) SpeakerNetwork(ctx context.Context, c *identity.Context, id, network string, add bool) error {
	action := "remove_gateway_network"
	if add {
		action = "add_gateway_network"
	}
	if err := adminOnly(c, action); err != nil {
		return err
	}
	_, err := modify(ctx, s, c, id, action, 0, func(tx *nsdb.Tx, sp *BGPSpeaker) error {
		if _, err := get[*Network](tx, c, network); err != nil {
			return err
		}
		i := slices.Index(sp.Networks, network)
		switch {
		case add && i >= 0:
			return nil
		case add:
			others, err := listOf[*BGPSpeaker](tx, "networks", network)
			if err != nil {
				return err
			}
			for _, o := range others {
				if o.ID != sp.ID && o.IPVersion == sp.IPVersion {
					return conflict("BgpSpeakerNetworkBindingError", "Network %s is already bound to BgpSpeaker %s.", network, o.ID)
				}
			}
			sp.Networks = append(sp.Networks, network)
		case i < 0:
			return NewError(NotFound, "BgpSpeakerNetworkNotAssociated", "Network %s is not associated with BGP speaker %s.", network, id)
		default:
			sp.Networks = slices.Delete(sp.Networks, i, i+1)
		}
		s.touch(&sp.Std)
		if err := s.translateSpeaker(tx, sp, add); err != nil {
			return err
		}
		return tx.Put(sp)
	})
	return err
}

// AdvertisedRoute is a route a speaker announces.
type AdvertisedRoute struct {
	Destination netip.Prefix
	NextHop     netip.Addr
	network     string // the gateway network it is announced through
}

// AdvertisedRoutes are a speaker's announcements (speakerRoutes): what its
// translation makes the provider routers' uplinks announce (bgp_drive.go).
func (s *Service) AdvertisedRoutes(ctx context.Context, c *identity.Context, id string) ([]AdvertisedRoute, error) {
	if err := adminOnly(c, "get_advertised_routes"); err != nil {
		return nil, err
	}
	var out []AdvertisedRoute
	err := s.view(ctx, func(tx *nsdb.Tx) error {
		sp, err := get[*BGPSpeaker](tx, c, id)
		if err != nil {
			return err
		}
		out, err = speakerRoutes(tx, sp)
		return err
	})
	return out, err
}

// CreateBGPPeer creates a peer.
func (s *Service) CreateBGPPeer(ctx context.Context, c *identity.Context, r BGPPeerRequest) (*BGPPeer, error) {
	cr, err := s.PrepareBGPPeer(c, r)
	return created[*BGPPeer](ctx, s, cr, err)
}

// PrepareBGPPeer checks a peer's create: MD5 authentication needs a
// password (checkPeerAuth).
func (s *Service) PrepareBGPPeer(c *identity.Context, r BGPPeerRequest) (*Creation, error) {
	if err := adminOnly(c, "create_bgp_peer"); err != nil {
		return nil, err
	}
	st, err := s.creating(c, &r.StdRequest, "create_bgp_peer")
	if err != nil {
		return nil, err
	}
	p := &BGPPeer{Std: st, PeerIP: r.PeerIP, RemoteAS: r.RemoteAS, AuthType: r.AuthType}
	r.StdRequest.apply(&p.Std)
	set(&p.Password, r.Password)
	if err := checkPeerAuth(p.AuthType, p.Password); err != nil {
		return nil, err
	}
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := *p
		x.ID = newID()
		_, err := tx.Create(&x)
		return &x, err
	}), nil
}

// checkPeerAuth: MD5 authentication needs a password (Neutron's rule),
// one the kernel takes as a TCP MD5 key (Nagare's: the speakers sign
// their sessions with it).
func checkPeerAuth(authType, password string) error {
	if authType != "md5" {
		return nil
	}
	if password == "" {
		return NewError(BadRequest, "InvalidBgpPeerMd5Authentication", "A password must be supplied when using auth_type md5.")
	}
	if err := model.CheckBGPPassword(password); err != nil {
		return NewError(BadRequest, "InvalidBgpPeerMd5Authentication", "%v", err)
	}
	return nil
}

// UpdateBGPPeer changes a peer's name or password.
func (s *Service) UpdateBGPPeer(ctx context.Context, c *identity.Context, id string, r BGPPeerRequest, ifRev int64) (*BGPPeer, error) {
	if err := adminOnly(c, "update_bgp_peer"); err != nil {
		return nil, err
	}
	return modify(ctx, s, c, id, "update_bgp_peer", ifRev, func(tx *nsdb.Tx, p *BGPPeer) error {
		r.StdRequest.apply(&p.Std)
		if r.Password != nil {
			if err := checkPeerAuth(p.AuthType, *r.Password); err != nil {
				return err
			}
			p.Password = *r.Password
		}
		s.touch(&p.Std)
		if err := tx.Put(p); err != nil {
			return err
		}
		return s.speakersOfPeer(tx, p.ID, true)
	})
}

// DeleteBGPPeer deletes a peer; speakers stop peering with it.
func (s *Service) DeleteBGPPeer(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	if err := adminOnly(c, "delete_bgp_peer"); err != nil {
		return err
	}
	_, err := modify(ctx, s, c, id, "delete_bgp_peer", ifRev, func(tx *nsdb.Tx, p *BGPPeer) error {
		if err := s.speakersOfPeer(tx, id, false); err != nil {
			return err
		}
		return tx.Delete(BGPPeerKind, id)
	})
	return err
}

// speakersOfPeer re-translates the speakers that peer with a peer that
// changed or went (strict: the change is refused if they cannot use it).
func (s *Service) speakersOfPeer(tx *nsdb.Tx, peer string, strict bool) error {
	sps, err := listOf[*BGPSpeaker](tx, "peers", peer)
	if err != nil {
		return err
	}
	for _, sp := range sps {
		if !strict {
			sp.Peers = slices.DeleteFunc(sp.Peers, func(id string) bool { return id == peer })
		}
		if err := s.translateSpeaker(tx, sp, strict); err != nil {
			return err
		}
		if err := tx.Put(sp); err != nil {
			return err
		}
	}
	return nil
}
