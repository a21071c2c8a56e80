//go:build linux

package userspace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/packet"
)

// tunnelState is an immutable snapshot of the tunnel configuration and its
// sockets, swapped atomically by SetTunnels so the packet path reads it
// without locks.
type tunnelState struct {
	cfg    datapath.TunnelConfig
	peers  map[[4]byte]struct{}
	vxlan  *tunnelSocket
	gre    *tunnelSocket
	active bool // receivers started
}

// tunnelSocket is one tunnel endpoint: a UDP socket for VXLAN or a raw IP
// socket for GRE. The sockets come from package net so that their reads
// and writes park in Go's netpoller (RawConn), and Close wakes a blocked
// receiver, with no poll loop of our own.
type tunnelSocket struct {
	kind    packet.Tunnel
	conn    net.Conn
	raw     syscall.RawConn
	dstPort uint16 // VXLAN: the UDP port of every peer; 0 for GRE
	done    chan struct{}
}

// Tunnel receive buffers hold the largest datagram a 9000-byte underlay
// can deliver; larger ones are counted (tunnel-oversize).
const (
	tunnelSlotSize = 9216 + 256
	tunnelBatch    = 64
	// sockBufSize is asked for as SO_RCVBUF/SO_SNDBUF: enough for a few
	// milliseconds of line rate while a receiver is descheduled.
	sockBufSize = 4 << 20
)

// SetTunnels implements datapath.Datapath.
func (dp *Datapath) SetTunnels(cfg datapath.TunnelConfig) error {
	if cfg.VXLANPort == 0 {
		cfg.VXLANPort = packet.DefaultVXLANPort
	}
	if (cfg.VXLAN || cfg.GRE) && !cfg.LocalIP.Unmap().Is4() {
		return fmt.Errorf("datapath: set tunnels: local address %q: only IPv4 underlays are supported", cfg.LocalIP)
	}
	cfg.LocalIP = cfg.LocalIP.Unmap()
	peers := make(map[[4]byte]struct{}, len(cfg.Peers))
	for _, a := range cfg.Peers {
		if a = a.Unmap(); a.Is4() {
			peers[a.As4()] = struct{}{}
		} else {
			return fmt.Errorf("datapath: set tunnels: peer %q: only IPv4 underlays are supported", a)
		}
	}
	cfg.Peers = slices.Clone(cfg.Peers)

	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return datapath.ErrClosed
	}
	old := dp.tun.Load()
	next := &tunnelState{cfg: cfg, peers: peers}
	sameEndpoint := old.cfg.LocalIP == cfg.LocalIP && old.cfg.VXLANPort == cfg.VXLANPort
	// Keep sockets whose endpoint did not change, so a membership change
	// loses no packets.
	if cfg.VXLAN {
		if sameEndpoint && old.vxlan != nil {
			next.vxlan = old.vxlan
		} else if s, err := dp.openVXLAN(cfg); err != nil {
			return err
		} else {
			next.vxlan = s
		}
	}
	if cfg.GRE {
		if old.cfg.LocalIP == cfg.LocalIP && old.gre != nil {
			next.gre = old.gre
		} else if s, err := dp.openGRE(cfg); err != nil {
			next.vxlan.closeUnless(old.vxlan)
			return err
		} else {
			next.gre = s
		}
	}
	dp.tun.Store(next)
	old.vxlan.closeUnless(next.vxlan)
	old.gre.closeUnless(next.gre)
	if dp.running {
		next.start(dp)
	}
	return nil
}

func (dp *Datapath) openVXLAN(cfg datapath.TunnelConfig) (*tunnelSocket, error) {
	var conn *net.UDPConn
	err := dp.inNetns(func() (err error) {
		conn, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.LocalIP, cfg.VXLANPort)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("datapath: open VXLAN socket on %s:%d: %w", cfg.LocalIP, cfg.VXLANPort, err)
	}
	return newTunnelSocket(packet.TunnelVXLAN, conn, cfg.VXLANPort)
}

func (dp *Datapath) openGRE(cfg datapath.TunnelConfig) (*tunnelSocket, error) {
	var conn *net.IPConn
	err := dp.inNetns(func() (err error) {
		conn, err = net.ListenIP("ip4:gre", &net.IPAddr{IP: cfg.LocalIP.AsSlice()})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("datapath: open GRE socket on %s: %w", cfg.LocalIP, err)
	}
	return newTunnelSocket(packet.TunnelGRE, conn, 0)
}

type syscallConn interface {
	net.Conn
	SyscallConn() (syscall.RawConn, error)
}

func newTunnelSocket(kind packet.Tunnel, conn syscallConn, dstPort uint16) (*tunnelSocket, error) {
	raw, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("datapath: %s socket: %w", kind, err)
	}
	// Bigger buffers than the 208 KiB default, beyond rmem_max if we may
	// (root): a receiver descheduled for a few ms must not drop.
	_ = raw.Control(func(fd uintptr) {
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], sockBufSize) != nil {
				_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[1], sockBufSize)
			}
		}
	})
	return &tunnelSocket{kind: kind, conn: conn, raw: raw, dstPort: dstPort}, nil
}

// closeUnless closes s unless it is keep (a socket carried over).
func (s *tunnelSocket) closeUnless(keep *tunnelSocket) error {
	if s == nil || s == keep {
		return nil
	}
	return s.conn.Close()
}

// start launches the receivers of ts once; Datapath.mu is held.
func (ts *tunnelState) start(dp *Datapath) {
	if ts.active {
		return
	}
	ts.active = true
	for _, s := range []*tunnelSocket{ts.vxlan, ts.gre} {
		if s != nil && s.done == nil {
			s.done = make(chan struct{})
			dp.wg.Add(1)
			go dp.tunnelLoop(s)
		}
	}
}

func (ts *tunnelState) close() error {
	return errors.Join(ts.vxlan.closeUnless(nil), ts.gre.closeUnless(nil))
}

// tunnelReceiver is a tunnel socket's receive state: recvmmsg buffers and
// the worker that delivers to local ports.
type tunnelReceiver struct {
	w     *worker
	s     *tunnelSocket
	msgs  [tunnelBatch]unix.Mmsghdr
	iovs  [tunnelBatch]unix.Iovec
	names [tunnelBatch]unix.RawSockaddrInet4
	bufs  [][]byte
	n     int
	err   error
	fn    func(fd uintptr) bool
}

// tunnelLoop receives on s until it is closed. Frames are delivered by
// tunnel key without simulation or flow lookup: the sender's simulation
// already chose the egress port, and the key names it.
func (dp *Datapath) tunnelLoop(s *tunnelSocket) {
	defer dp.wg.Done()
	defer close(s.done)
	r := &tunnelReceiver{w: newWorker(dp, nil, 0, minSlotSize), s: s, bufs: makeSlots(tunnelBatch, tunnelSlotSize)}
	for i := range r.msgs {
		r.msgs[i].Hdr.Iov = &r.iovs[i]
		r.msgs[i].Hdr.SetIovlen(1)
		r.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&r.names[i]))
	}
	r.fn = r.recv
	c := &dp.vxlan
	if s.kind == packet.TunnelGRE {
		c = &dp.gre
	}
	for {
		for i := range r.msgs {
			r.iovs[i].Base = &r.bufs[i][0]
			r.iovs[i].SetLen(len(r.bufs[i]))
			r.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
			r.msgs[i].Hdr.Flags = 0
		}
		r.n, r.err = 0, nil
		if err := s.raw.Read(r.fn); err != nil {
			// Closed by SetTunnels or Close; anything else would repeat
			// forever, so it ends the receiver too, loudly.
			if !errors.Is(err, net.ErrClosed) {
				dp.log.Error("datapath: tunnel receiver stopped", "tunnel", s.kind.String(), "err", err)
			}
			return
		}
		if r.err != nil {
			dp.log.Warn("datapath: tunnel receive failed", "tunnel", s.kind.String(), "err", r.err)
			continue
		}
		r.deliver(c)
	}
}

// recv is the RawConn.Read callback. It returns false to wait for data.
func (r *tunnelReceiver) recv(fd uintptr) bool {
	for {
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), tunnelBatch, unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			r.n = int(n)
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			r.err = e
			return true
		}
	}
}

// deliver checks and decapsulates the received datagrams and sends their
// inner frames out of the ports their keys name.
func (r *tunnelReceiver) deliver(c *tunnelCounters) {
	w := r.w
	ts := w.dp.tun.Load()
	ports := w.dp.ports.Load()
	var pkts, bytes uint64
	for i := 0; i < r.n; i++ {
		m := &r.msgs[i]
		b := r.bufs[i][:m.Len]
		if m.Hdr.Flags&unix.MSG_TRUNC != 0 {
			w.drops.add(rTunOversize, 1)
			continue
		}
		if _, ok := ts.peers[r.names[i].Addr]; !ok {
			w.drops.add(rTunUnknownPeer, 1)
			continue
		}
		var (
			key   uint32
			inner []byte
			err   error
		)
		if r.s.kind == packet.TunnelVXLAN {
			key, inner, err = packet.DecapVXLAN(b)
		} else {
			// A raw IPv4 socket hands over the IP header too.
			if len(b) < 20 || len(b) < int(b[0]&0x0f)*4 {
				w.drops.add(rTunMalformed, 1)
				continue
			}
			key, inner, err = packet.DecapGRE(b[int(b[0]&0x0f)*4:])
		}
		if err == nil && key == packet.StateTunnelKey {
			r.deliverState(c, netip.AddrFrom4(r.names[i].Addr), inner)
			continue
		}
		if err == nil && key == packet.ProbeTunnelKey {
			r.deliverProbe(c, netip.AddrFrom4(r.names[i].Addr), inner)
			continue
		}
		if err != nil || len(inner) < ethHdrLen {
			w.drops.add(rTunMalformed, 1)
			continue
		}
		p := ports.byKey[key]
		if p == nil {
			w.drops.add(rTunUnknownKey, 1)
			continue
		}
		pkts++
		bytes += uint64(len(inner))
		w.queueLocal(p, inner)
	}
	c.rxPackets.Add(pkts)
	c.rxBytes.Add(bytes)
	w.flush()
}

// deliverState hands a flow-state packet to the StateHandler. It runs
// between the data packets of its batch, in arrival order: data queued
// before it is still queued (sent at the end of the batch), which is fine,
// since only packets after the state may depend on it.
func (r *tunnelReceiver) deliverState(c *tunnelCounters, from netip.Addr, payload []byte) {
	h := r.w.dp.state
	if h == nil || len(payload) == 0 {
		r.w.drops.add(rTunState, 1)
		return
	}
	c.stateRx.Add(1)
	h.State(from, payload)
}

// deliverProbe hands a probe to the ProbeHandler.
func (r *tunnelReceiver) deliverProbe(c *tunnelCounters, from netip.Addr, payload []byte) {
	h := r.w.dp.probe
	if h == nil || len(payload) == 0 {
		r.w.drops.add(rTunProbe, 1)
		return
	}
	c.probeRx.Add(1)
	h.Probe(from, payload)
}

// SendState implements datapath.Datapath.
func (dp *Datapath) SendState(peer netip.Addr, payload []byte) error {
	return dp.sendControl(peer, payload, packet.StateTunnelKey, "state")
}

// SendProbe implements datapath.Datapath.
func (dp *Datapath) SendProbe(peer netip.Addr, payload []byte) error {
	return dp.sendControl(peer, payload, packet.ProbeTunnelKey, "probe")
}

// sendControl sends one of the agent's own packets under a reserved key.
func (dp *Datapath) sendControl(peer netip.Addr, payload []byte, key uint32, what string) error {
	peer = peer.Unmap()
	ts := dp.tun.Load()
	if !peer.Is4() {
		return fmt.Errorf("datapath: send %s: peer %q: only IPv4 underlays are supported", what, peer)
	}
	if _, ok := ts.peers[peer.As4()]; !ok {
		return fmt.Errorf("datapath: send %s: %s is not a tunnel-zone peer", what, peer)
	}
	if len(payload) == 0 || len(payload) > tunnelSlotSize-64 {
		return fmt.Errorf("datapath: send %s: %d-byte payload", what, len(payload))
	}
	bp := stateBufs.Get().(*[]byte)
	defer stateBufs.Put(bp)
	buf := (*bp)[:8+len(payload)]
	var (
		err error
		c   *tunnelCounters
	)
	switch {
	case ts.vxlan != nil:
		c = &dp.vxlan
		if _, err = packet.EncapVXLAN(buf, payload, key); err == nil {
			_, err = ts.vxlan.conn.(*net.UDPConn).WriteToUDPAddrPort(buf, netip.AddrPortFrom(peer, ts.vxlan.dstPort))
		}
	case ts.gre != nil:
		c = &dp.gre
		if _, err = packet.EncapGRE(buf, payload, key); err == nil {
			_, err = ts.gre.conn.(*net.IPConn).WriteToIP(buf, &net.IPAddr{IP: peer.AsSlice()})
		}
	default:
		dp.drops.add(rTunDisabled, 1)
		return fmt.Errorf("datapath: send %s: no tunnel enabled by SetTunnels", what)
	}
	if err != nil {
		c.txErrors.Add(1)
		dp.drops.add(rTunTxError, 1)
		return fmt.Errorf("datapath: send %s to %s: %w", what, peer, err)
	}
	if key == packet.ProbeTunnelKey {
		c.probeTx.Add(1)
	} else {
		c.stateTx.Add(1)
	}
	return nil
}

// stateBufs are SendState's packet buffers: it runs on the miss path of
// every new connection, which must not allocate.
var stateBufs = sync.Pool{New: func() any { b := make([]byte, tunnelSlotSize); return &b }}
