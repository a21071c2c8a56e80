//go:build linux

package userspace

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

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
	// noGSO is set when the kernel refused a UDP_SEGMENT message on the
	// socket: it then sends one datagram per packet (tunnelq.go).
	noGSO atomic.Bool
	// gro: UDP_GRO is on, so a receive may hold a run of datagrams.
	gro bool
}

// Tunnel receive buffers hold the largest datagram a 9000-byte underlay
// can deliver; larger ones are counted (tunnel-oversize). With UDP_GRO a
// VXLAN receive can be a run of datagrams of up to 64 KiB, so VXLAN takes
// fewer, larger buffers.
const (
	tunnelSlotSize = 9216 + 256
	tunnelBatch    = 64
	groSlotSize    = 65536 + 256
	groBatch       = 32
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
	if cfg.VXLAN || cfg.GRE {
		mtu, err := dp.interfaceMTU(cfg.LocalIP)
		if err != nil {
			next.vxlan.closeUnless(old.vxlan)
			next.gre.closeUnless(old.gre)
			return err
		}
		dp.underlayMTU.Store(int32(mtu))
	}
	dp.tun.Store(next)
	old.vxlan.closeUnless(next.vxlan)
	old.gre.closeUnless(next.gre)
	if dp.running {
		next.start(dp)
	}
	return nil
}

// interfaceMTU returns the MTU of the interface holding addr in the
// datapath's namespace, or 0 if none holds it (the sockets will fail to
// bind anyway, with a clearer error).
func (dp *Datapath) interfaceMTU(addr netip.Addr) (int, error) {
	mtu := 0
	err := dp.inNetns(func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		for _, ifc := range ifs {
			addrs, err := ifc.Addrs()
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
						mtu = ifc.MTU
						return nil
					}
				}
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("datapath: set tunnels: find the MTU of %s: %w", addr, err)
	}
	return mtu, nil
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
	s, err := newTunnelSocket(packet.TunnelVXLAN, conn, cfg.VXLANPort)
	if err != nil {
		return nil, err
	}
	// Runs of datagrams from one peer (the segments of a super-frame that
	// the peer sent with UDP_SEGMENT) arrive as one receive. Kernels
	// without UDP_GRO (before 5.0) deliver them one by one, which works too.
	_ = s.raw.Control(func(fd uintptr) {
		s.gro = unix.SetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_GRO, 1) == nil
	})
	return s, nil
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
	case ts.vxlan != nil && via != packet.TunnelGRE:
		c = &dp.vxlan
		if _, err = packet.EncapVXLAN(buf, payload, key); err == nil {
			_, err = ts.vxlan.conn.(*net.UDPConn).WriteToUDPAddrPort(buf, netip.AddrPortFrom(peer, ts.vxlan.dstPort))
		}
	case ts.gre != nil && via != packet.TunnelVXLAN:
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
	switch {
	case echo:
		c.echoes.Add(1)
	case key == packet.ProbeTunnelKey:
		c.probeTx.Add(1)
	default:
		c.stateTx.Add(1)
	}
	return nil
}

// stateBufs are SendState's packet buffers: it runs on the miss path of
// every new connection, which must not allocate.
var stateBufs = sync.Pool{New: func() any { b := make([]byte, tunnelSlotSize); return &b }}
