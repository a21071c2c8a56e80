// Package gobgp is the BGP speaker of the agent's uplinks, embedded
// GoBGP v4 (github.com/osrg/gobgp/v4): one BgpServer per uplink port. It
// implements bgp.Speaker. BFD is the controller's (package bfd), not
// GoBGP's.
//
// Malformed and hostile updates are GoBGP's to handle (RFC 7606: treat as
// withdraw, or a NOTIFICATION and a reset); a peer over its prefix limit
// is shut down by GoBGP and stays down until the controller enables it
// again. Sessions are bound to the speaker's interface (SO_BINDTODEVICE),
// so they leave by the uplink whatever the host's routes say.
//
// The speaker only connects: it does not listen (GoBGP's ListenPort -1),
// and a peer's own attempts are refused. Both ends connect when an
// uplink comes back (the peer as soon as its interface is up, the speaker
// at its next attempt), now and then at the same time. GoBGP v4.8
// resolves such a collision only if its outgoing connection already has
// the peer's OPEN when the accepted one gets it; otherwise it goes on with
// the accepted connection and leaves the outgoing one, OPEN exchanged,
// parked for its next Active state. The peer keeps whichever connection
// RFC 4271 §6.8 says (the higher BGP identifier's), closes the other,
// and times the parked one out in OpenConfirm; the next time the
// session starts, GoBGP takes the parked connection, reads the peer's
// buffered KEEPALIVE (established) and then its Hold Timer Expired
// (down), while its outgoing attempt of that round is parked again: the
// session never comes back, every 5 s, with BFD up. With one direction
// there is one connection and no collision; the connect retry is
// GoBGP's (2 s), and a peer configured passive works as well.
package gobgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/google/uuid"
	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gbgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/nagare/nagare/pkg/agent/bgp"
)

// New returns a speaker; Start brings it up.
func New(cfg bgp.SpeakerConfig, ev bgp.Events) (bgp.Speaker, error) {
	if !cfg.RouterID.Is4() {
		return nil, fmt.Errorf("bgp: router id %s is not an IPv4 address", cfg.RouterID)
	}
	if cfg.ASN == 0 {
		return nil, errors.New("bgp: no ASN")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &speaker{cfg: cfg, ev: ev, paths: map[netip.Prefix]uuid.UUID{}, flaps: map[netip.Addr]uint32{}}, nil
}

// Factory is New as a bgp.Factory.
var Factory bgp.Factory = New

type speaker struct {
	cfg bgp.SpeakerConfig
	ev  bgp.Events
	s   *server.BgpServer

	stopWatch context.CancelFunc
	serving   chan struct{} // closed when Serve returns

	mu    sync.Mutex
	paths map[netip.Prefix]uuid.UUID // advertised, by GoBGP's path id
	flaps map[netip.Addr]uint32
	up    map[netip.Addr]bool // established, to count flaps
}

func (sp *speaker) Start(ctx context.Context) error {
	// GoBGP logs every session event at info; its warnings and errors
	// (malformed updates, prefix limits, BFD) are worth the agent's log.
	lvl := new(slog.LevelVar)
	lvl.Set(slog.LevelWarn)
	sp.s = server.NewBgpServer(server.LoggerOption(sp.cfg.Log.With("component", "gobgp", "router_id", sp.cfg.RouterID), lvl))
	sp.serving = make(chan struct{})
	go func() { // owned: Stop waits for it
		defer close(sp.serving)
		sp.s.Serve()
	}()
	// No listener (the package doc says why).
	g := &api.Global{Asn: sp.cfg.ASN, RouterId: sp.cfg.RouterID.String(), ListenPort: -1, BindToDevice: sp.cfg.Interface}
	if err := sp.s.StartBgp(ctx, &api.StartBgpRequest{Global: g}); err != nil {
		sp.s.Stop()
		<-sp.serving
		return fmt.Errorf("bgp: start speaker %s: %w", sp.cfg.RouterID, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	sp.stopWatch = cancel
	err := sp.s.WatchEvent(wctx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: sp.onPeer,
		OnBestPath:   sp.onBest,
	}, server.WatchPeer(), server.WatchBestPath(false))
	if err != nil {
		cancel()
		sp.s.Stop()
		<-sp.serving
		return fmt.Errorf("bgp: watch speaker %s: %w", sp.cfg.RouterID, err)
	}
	return nil
}

func (sp *speaker) Stop() {
	if sp.s == nil {
		return
	}
	sp.stopWatch()
	sp.s.Stop()
	<-sp.serving
}

func family(a netip.Addr) *api.Family {
	if a.Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

func (sp *speaker) peer(p bgp.PeerConfig) *api.Peer {
	secs := func(d time.Duration, def uint64) uint64 {
		if d <= 0 {
			return def
		}
		return uint64((d + time.Second - 1) / time.Second)
	}
	ap := &api.Peer{
		// AuthPassword: GoBGP sets the key on its connection's socket
		// (TCP_MD5SIG) before it connects.
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry: secs(p.ConnectRetry, 1), HoldTime: secs(p.HoldTime, 9), KeepaliveInterval: secs(p.KeepAlive, 3),
			// A session we reset (ResetPeer: BFD down) may try again
			// after a second: the failover is over by then. GoBGP v4.8
			// applies this only after its own administrative reset
			// (a Cease/Administrative Reset it sent); after any other
			// end (the peer's notification, a hold timer, a TCP
			// failure) it waits a fixed 5 s (holdtimeIdle) before its
			// next attempt.
			IdleHoldTimeAfterReset: 1,
		}},
		Transport: &api.Transport{BindInterface: p.Interface, RemotePort: uint32(p.Port)},
		AfiSafis: []*api.AfiSafi{{
			Config:       &api.AfiSafiConfig{Family: family(p.Address), Enabled: true},
			PrefixLimits: &api.PrefixLimit{Family: family(p.Address), MaxPrefixes: p.MaxPrefixes, ShutdownThresholdPct: 80},
		}},
	}
	if p.LocalAddress.IsValid() {
		ap.Transport.LocalAddress = p.LocalAddress.String()
	}
	// No GoBGP BFD: the controller runs its own (pkg/agent/bgp/bfd says
	// why) and resets the session when it goes down.
	return ap
}

func (sp *speaker) AddPeer(ctx context.Context, p bgp.PeerConfig) error {
	if err := sp.s.AddPeer(ctx, &api.AddPeerRequest{Peer: sp.peer(p)}); err != nil {
		return fmt.Errorf("bgp: add peer %s: %w", p.Address, err)
	}
	return nil
}

func (sp *speaker) UpdatePeer(ctx context.Context, p bgp.PeerConfig) error {
	rsp, err := sp.s.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: sp.peer(p)})
	if err != nil {
		return fmt.Errorf("bgp: update peer %s: %w", p.Address, err)
	}
	if rsp.NeedsSoftResetIn {
		err = sp.s.ResetPeer(ctx, &api.ResetPeerRequest{Address: p.Address.String(), Soft: true, Direction: api.ResetPeerRequest_DIRECTION_IN})
	}
	return err
}

func (sp *speaker) RemovePeer(ctx context.Context, addr netip.Addr) error {
	if err := sp.s.DeletePeer(ctx, &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		return fmt.Errorf("bgp: remove peer %s: %w", addr, err)
	}
	sp.mu.Lock()
	delete(sp.flaps, addr)
	delete(sp.up, addr)
	sp.mu.Unlock()
	return nil
}

func (sp *speaker) EnablePeer(ctx context.Context, addr netip.Addr) error {
	if err := sp.s.EnablePeer(ctx, &api.EnablePeerRequest{Address: addr.String()}); err != nil {
		return fmt.Errorf("bgp: enable peer %s: %w", addr, err)
	}
	return nil
}

func (sp *speaker) ResetPeer(ctx context.Context, addr netip.Addr) error {
	// GoBGP keeps the notification of a session that is not established
	// and sends it to the next one, which it would end at once: only an
	// established session is reset.
	established := false
	if err := sp.s.ListPeer(ctx, &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) {
		established = p.GetState().GetSessionState() == api.PeerState_SESSION_STATE_ESTABLISHED
	}); err != nil {
		return fmt.Errorf("bgp: reset peer %s: %w", addr, err)
	}
	if !established {
		return nil
	}
	if err := sp.s.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr.String(), Communication: "BFD down"}); err != nil {
		return fmt.Errorf("bgp: reset peer %s: %w", addr, err)
	}
	return nil
}

func (sp *speaker) Peers(ctx context.Context) ([]bgp.PeerStatus, error) {
	var out []bgp.PeerStatus
	err := sp.s.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		out = append(out, sp.status(p))
	})
	if err != nil {
		return nil, fmt.Errorf("bgp: list peers: %w", err)
	}
	return out, nil
}

var sessionStates = map[api.PeerState_SessionState]bgp.SessionState{
	api.PeerState_SESSION_STATE_IDLE: bgp.StateIdle, api.PeerState_SESSION_STATE_CONNECT: bgp.StateConnect,
	api.PeerState_SESSION_STATE_ACTIVE: bgp.StateActive, api.PeerState_SESSION_STATE_OPENSENT: bgp.StateOpenSent,
	api.PeerState_SESSION_STATE_OPENCONFIRM: bgp.StateOpenConfirm, api.PeerState_SESSION_STATE_ESTABLISHED: bgp.StateEstablished,
}

var fsmStates = map[gbgp.FSMState]bgp.SessionState{
	gbgp.BGP_FSM_IDLE: bgp.StateIdle, gbgp.BGP_FSM_CONNECT: bgp.StateConnect, gbgp.BGP_FSM_ACTIVE: bgp.StateActive,
	gbgp.BGP_FSM_OPENSENT: bgp.StateOpenSent, gbgp.BGP_FSM_OPENCONFIRM: bgp.StateOpenConfirm,
	gbgp.BGP_FSM_ESTABLISHED: bgp.StateEstablished,
}

func (sp *speaker) status(p *api.Peer) bgp.PeerStatus {
	addr, _ := netip.ParseAddr(p.GetConf().GetNeighborAddress())
	st := bgp.PeerStatus{Address: addr, ASN: p.GetConf().GetPeerAsn(), State: bgp.StateIdle}
	if s, ok := sessionStates[p.GetState().GetSessionState()]; ok {
		st.State = s
	}
	st.PrefixLimit = p.GetState().GetAdminState() == api.PeerState_ADMIN_STATE_PFX_CT
	if st.State == bgp.StateEstablished {
		if up := p.GetTimers().GetState().GetUptime(); up != nil {
			st.Since = up.AsTime()
		}
	}
	for _, af := range p.GetAfiSafis() {
		s := af.GetState()
		st.Received += uint32(s.GetReceived())
		st.Accepted += uint32(s.GetAccepted())
		st.Sent += uint32(s.GetAdvertised())
	}
	st.Reason = p.GetState().GetDisconnectMessage()
	sp.mu.Lock()
	st.Flaps = sp.flaps[addr]
	sp.mu.Unlock()
	return st
}

// onPeer turns GoBGP's peer event into a status (without counters: the
// event carries none; Peers has them).
func (sp *speaker) onPeer(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE {
		return
	}
	ps := ev.Peer.State
	st := bgp.PeerStatus{Address: ev.Peer.Conf.NeighborAddress, ASN: ps.PeerASN, State: bgp.StateIdle,
		PrefixLimit: ps.AdminState == api.PeerState_ADMIN_STATE_PFX_CT, Reason: ps.DisconnectMessage}
	if s, ok := fsmStates[ps.SessionState]; ok {
		st.State = s
	}
	sp.mu.Lock()
	if sp.up == nil {
		sp.up = map[netip.Addr]bool{}
	}
	was := sp.up[st.Address]
	is := st.State == bgp.StateEstablished
	if was && !is {
		sp.flaps[st.Address]++
	}
	sp.up[st.Address] = is
	st.Flaps = sp.flaps[st.Address]
	sp.mu.Unlock()
	if is {
		st.Since = time.Now()
	}
	sp.ev.PeerChanged(st)
}

// onBest reports best paths learned from peers; the speaker's own
// announcements (no peer address) are not news.
func (sp *speaker) onBest(paths []*apiutil.Path, _ time.Time) {
	var out []bgp.Route
	for _, p := range paths {
		if !p.PeerAddress.IsValid() || p.PeerAddress.IsUnspecified() {
			continue
		}
		r, ok := route(p)
		if ok {
			out = append(out, r)
		}
	}
	if len(out) > 0 {
		sp.ev.BestPaths(out)
	}
}

// route reads a unicast path; other families are not for uplinks.
func route(p *apiutil.Path) (bgp.Route, bool) {
	pfx, ok := p.Nlri.(*gbgp.IPAddrPrefix)
	if !ok {
		return bgp.Route{}, false
	}
	r := bgp.Route{Prefix: pfx.Prefix, Peer: p.PeerAddress, Withdrawn: p.Withdrawal}
	for _, a := range p.Attrs {
		switch x := a.(type) {
		case *gbgp.PathAttributeNextHop:
			r.NextHop = x.Value
		case *gbgp.PathAttributeMpReachNLRI:
			r.NextHop = x.Nexthop
		case *gbgp.PathAttributeAsPath:
			for _, seg := range x.Value {
				r.ASPath = append(r.ASPath, seg.GetAS()...)
			}
		}
	}
	return r, true
}

func (sp *speaker) Advertise(ctx context.Context, prefixes []netip.Prefix) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	for _, pfx := range prefixes {
		pfx = pfx.Masked()
		if _, ok := sp.paths[pfx]; ok {
			continue
		}
		path, err := sp.localPath(pfx)
		if err != nil {
			return err
		}
		rsp, err := sp.s.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{path}})
		if err == nil && len(rsp) == 1 && rsp[0].Error != nil {
			err = rsp[0].Error
		}
		if err != nil {
			return fmt.Errorf("bgp: announce %s: %w", pfx, err)
		}
		sp.paths[pfx] = rsp[0].UUID
	}
	return nil
}

// localPath is an announcement of pfx with the speaker's address as next
// hop (GoBGP puts its session address there for eBGP anyway).
func (sp *speaker) localPath(pfx netip.Prefix) (*apiutil.Path, error) {
	nlri, err := gbgp.NewIPAddrPrefix(pfx)
	if err != nil {
		return nil, fmt.Errorf("bgp: announce %s: %w", pfx, err)
	}
	nh := sp.cfg.Address
	if !nh.IsValid() || nh.Is4() != pfx.Addr().Is4() {
		nh = netip.IPv4Unspecified()
		if pfx.Addr().Is6() {
			nh = netip.IPv6Unspecified()
		}
	}
	attrs := []gbgp.PathAttributeInterface{gbgp.NewPathAttributeOrigin(0)}
	fam := gbgp.RF_IPv4_UC
	if pfx.Addr().Is4() {
		a, err := gbgp.NewPathAttributeNextHop(nh)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
	} else {
		fam = gbgp.RF_IPv6_UC
		a, err := gbgp.NewPathAttributeMpReachNLRI(fam, []gbgp.PathNLRI{{NLRI: nlri}}, nh)
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, a)
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs}, nil
}

func (sp *speaker) Withdraw(ctx context.Context, prefixes []netip.Prefix) error {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	var ids []uuid.UUID
	for _, pfx := range prefixes {
		pfx = pfx.Masked()
		if id, ok := sp.paths[pfx]; ok {
			ids = append(ids, id)
			delete(sp.paths, pfx)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if err := sp.s.DeletePath(apiutil.DeletePathRequest{UUIDs: ids}); err != nil {
		return fmt.Errorf("bgp: withdraw %d prefixes: %w", len(ids), err)
	}
	return nil
}
