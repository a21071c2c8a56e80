package memory

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// tunnels is an immutable snapshot of the tunnel configuration, swapped
// by SetTunnels.
type tunnels struct {
	cfg   datapath.TunnelConfig
	peers map[netip.Addr]bool
	bound bool // cfg.LocalIP is bound on the hub
}

// SetTunnels implements datapath.Datapath: the local address is bound on
// the host's hub while an encapsulation is on.
func (dp *Datapath) SetTunnels(cfg datapath.TunnelConfig) error {
	if cfg.VXLANPort == 0 {
		cfg.VXLANPort = packet.DefaultVXLANPort
	}
	cfg.LocalIP = cfg.LocalIP.Unmap()
	on := cfg.VXLAN || cfg.GRE
	if on && !cfg.LocalIP.IsValid() {
		return errors.New("datapath: set tunnels: no local address")
	}
	next := &tunnels{cfg: cfg, peers: make(map[netip.Addr]bool, len(cfg.Peers)), bound: on}
	for _, a := range cfg.Peers {
		next.peers[a.Unmap()] = true
	}
	next.cfg.Peers = slices.Clone(cfg.Peers)
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed.Load() {
		return datapath.ErrClosed
	}
	old := dp.tun.Load()
	if on {
		if err := dp.host.hub.bind(cfg.LocalIP, dp.ep); err != nil {
			return fmt.Errorf("datapath: set tunnels: %w", err)
		}
	}
	if old.bound && (!on || old.cfg.LocalIP != cfg.LocalIP) {
		dp.host.hub.unbind(old.cfg.LocalIP, dp.ep)
	}
	dp.tun.Store(next)
	return nil
}

// tunnelStats indexes dp.tunStats.
func tunnelStats(kind packet.Tunnel) int {
	if kind == packet.TunnelGRE {
		return 1
	}
	return 0
}

func (dp *Datapath) countTunnel(kind packet.Tunnel, fn func(s *datapath.TunnelStats)) {
	dp.tunMu.Lock()
	fn(&dp.tunStats[tunnelStats(kind)])
	dp.tunMu.Unlock()
}

// header writes the VXLAN (RFC 7348) or GRE (RFC 2890, with key, carrying
// Ethernet) header of key into hdr.
func header(hdr []byte, kind packet.Tunnel, key uint32) []byte {
	if kind == packet.TunnelVXLAN {
		binary.BigEndian.PutUint32(hdr[0:], 0x08<<24)
		binary.BigEndian.PutUint32(hdr[4:], key<<8)
	} else {
		binary.BigEndian.PutUint16(hdr[0:], 0x2000)
		binary.BigEndian.PutUint16(hdr[2:], packet.EtherTypeTEB)
		binary.BigEndian.PutUint32(hdr[4:], key)
	}
	return hdr[:8]
}

// encap sends b to the host of a's underlay address with the egress
// port's tunnel key. A datagram nobody receives is lost on the underlay,
// not here: it counts as sent.
func (dp *Datapath) encap(a *flow.Action, b, hdr []byte) bool {
	t := dp.tun.Load()
	if (a.Tunnel == packet.TunnelVXLAN && !t.cfg.VXLAN) || (a.Tunnel == packet.TunnelGRE && !t.cfg.GRE) {
		dp.drop(datapath.DropTunnelDisabled, 1)
		return false
	}
	dp.host.hub.send(t.cfg.LocalIP, a.Underlay.Unmap(), a.Tunnel, t.cfg.VXLANPort, header(hdr, a.Tunnel, a.TunnelKey), b)
	dp.countTunnel(a.Tunnel, func(s *datapath.TunnelStats) {
		s.TxPackets++
		s.TxBytes += uint64(len(b))
	})
	return true
}

// SendState implements datapath.Datapath.
func (dp *Datapath) SendState(peer netip.Addr, payload []byte) error {
	return dp.sendReserved(peer, payload, packet.StateTunnelKey, "state", 0)
}

// SendProbe implements datapath.Datapath.
func (dp *Datapath) SendProbe(peer netip.Addr, payload []byte) error {
	return dp.sendReserved(peer, payload, packet.ProbeTunnelKey, "probe", 0)
}

// sendReserved sends a packet under a reserved key by the encapsulation
// via, or with 0 the preferred one (VXLAN if enabled, else GRE). An echo
// reply (via set) is counted apart.
func (dp *Datapath) sendReserved(peer netip.Addr, payload []byte, key uint32, what string, via packet.Tunnel) error {
	echo := via != 0
	peer = peer.Unmap()
	t := dp.tun.Load()
	switch {
	case !t.peers[peer]:
		return fmt.Errorf("datapath: send %s: %s is not a tunnel-zone peer", what, peer)
	case len(payload) == 0 || len(payload) > 9000:
		return fmt.Errorf("datapath: send %s: %d-byte payload", what, len(payload))
	}
	kind := packet.TunnelVXLAN
	switch {
	case t.cfg.VXLAN && via != packet.TunnelGRE:
	case t.cfg.GRE && via != packet.TunnelVXLAN:
		kind = packet.TunnelGRE
	default:
		dp.drop(datapath.DropTunnelDisabled, 1)
		return fmt.Errorf("datapath: send %s: no tunnel enabled by SetTunnels", what)
	}
	var hdr [8]byte
	dp.host.hub.send(t.cfg.LocalIP, peer, kind, t.cfg.VXLANPort, header(hdr[:], kind, key), payload)
	dp.countTunnel(kind, func(s *datapath.TunnelStats) {
		switch {
		case echo:
			s.Echoes++
		case key == packet.ProbeTunnelKey:
			s.ProbeTx++
		default:
			s.StateTx++
		}
	})
	return nil
}

// tunnelLoop receives the datagrams sent to this datapath's address.
// Frames are delivered by tunnel key, without a lookup or a simulation.
func (dp *Datapath) tunnelLoop(ctx context.Context) {
	defer dp.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-dp.ep.rx.ready:
			for range queueLen {
				f := dp.ep.rx.pop()
				if f == nil {
					break
				}
				dp.receiveTunnel(f)
				f.free()
			}
			dp.ep.rx.rearm()
		}
	}
}

func (dp *Datapath) receiveTunnel(f *frame) {
	t := dp.tun.Load()
	// A datagram for an encapsulation that is off has no socket to reach.
	if (f.kind == packet.TunnelVXLAN && (!t.cfg.VXLAN || f.port != t.cfg.VXLANPort)) || (f.kind == packet.TunnelGRE && !t.cfg.GRE) {
		return
	}
	if !t.peers[f.src] {
		dp.drop(datapath.DropTunnelUnknownPeer, 1)
		return
	}
	var (
		key   uint32
		inner []byte
		err   error
	)
	if f.kind == packet.TunnelVXLAN {
		key, inner, err = packet.DecapVXLAN(f.bytes())
	} else {
		key, inner, err = packet.DecapGRE(f.bytes())
	}
	if err == nil && key == packet.StateTunnelKey {
		if dp.state == nil || len(inner) == 0 {
			dp.drop(datapath.DropTunnelStateUnhandled, 1)
			return
		}
		dp.countTunnel(f.kind, func(s *datapath.TunnelStats) { s.StateRx++ })
		dp.state.State(f.src, inner)
		return
	}
	if err == nil && key == packet.ProbeTunnelKey && packet.AnswerEcho(inner) {
		// The datapath answers echoes itself (datapath.SendProbe).
		if err := dp.sendReserved(f.src, inner, packet.ProbeTunnelKey, "echo reply", f.kind); err != nil {
			dp.log.Debug("datapath: echo reply", "peer", f.src, "err", err)
		}
		return
	}
	if err == nil && key == packet.ProbeTunnelKey {
		if dp.probe == nil || len(inner) == 0 {
			dp.drop(datapath.DropTunnelProbeUnhandled, 1)
			return
		}
		dp.countTunnel(f.kind, func(s *datapath.TunnelStats) { s.ProbeRx++ })
		dp.probe.Probe(f.src, inner)
		return
	}
	if err != nil || len(inner) < 14 {
		dp.drop(datapath.DropTunnelMalformed, 1)
		return
	}
	p := dp.ports.Load().key[key]
	if p == nil {
		dp.drop(datapath.DropTunnelUnknownKey, 1)
		return
	}
	dp.countTunnel(f.kind, func(s *datapath.TunnelStats) {
		s.RxPackets++
		s.RxBytes += uint64(len(inner))
	})
	dp.output(p, inner)
}
