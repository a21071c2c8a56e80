package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/agent/bgp/bfd"
)

// bfdRunner runs the BFD sessions of one speaker (RFC 5881, single hop):
// one socket receives on the speaker's address, port 3784, and each peer
// has a session and a socket that sends from a source port of its own,
// with TTL 255; a packet that arrives with another TTL was not sent by a
// neighbour and is dropped (the GTSM check of RFC 5881 §5).
type bfdRunner struct {
	local   netip.Addr
	iface   string // bound with SO_BINDTODEVICE; "" for none
	onState func(peer netip.Addr, old, cur bfd.State)
	log     *slog.Logger

	rx     net.PacketConn
	rx4    *ipv4.PacketConn
	rx6    *ipv6.PacketConn
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	peers map[netip.Addr]*bfdPeer
}

type bfdPeer struct {
	sess *bfd.Session
	tx   *net.UDPConn
}

// discriminators are unique within the agent.
var (
	discMu   sync.Mutex
	nextDisc = rand.Uint32()>>1 | 1
)

func newDiscriminator() uint32 {
	discMu.Lock()
	defer discMu.Unlock()
	nextDisc++
	if nextDisc == 0 {
		nextDisc = 1
	}
	return nextDisc
}

// bindControl binds a socket to an interface, if one is given.
func bindControl(iface string, ttl int) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			if iface != "" {
				if serr = unix.BindToDevice(int(fd), iface); serr != nil {
					return
				}
			}
			if ttl > 0 {
				if network == "udp6" {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_UNICAST_HOPS, ttl)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TTL, ttl)
				}
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}

func udpNetwork(a netip.Addr) string {
	if a.Is4() {
		return "udp4"
	}
	return "udp6"
}

// startBFD opens the receiving socket and starts the runner.
func startBFD(local netip.Addr, iface string, log *slog.Logger, onState func(peer netip.Addr, old, cur bfd.State)) (*bfdRunner, error) {
	lc := net.ListenConfig{Control: bindControl(iface, 0)}
	pc, err := lc.ListenPacket(context.Background(), udpNetwork(local), netip.AddrPortFrom(local, bfd.ControlPort).String())
	if err != nil {
		return nil, fmt.Errorf("bfd: listen on %s port %d: %w", local, bfd.ControlPort, err)
	}
	r := &bfdRunner{local: local, iface: iface, onState: onState, log: log, rx: pc, peers: map[netip.Addr]*bfdPeer{}}
	if local.Is4() {
		r.rx4 = ipv4.NewPacketConn(pc)
		err = r.rx4.SetControlMessage(ipv4.FlagTTL, true)
	} else {
		r.rx6 = ipv6.NewPacketConn(pc)
		err = r.rx6.SetControlMessage(ipv6.FlagHopLimit, true)
	}
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("bfd: receive TTLs: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Add(2)
	go r.receive()
	go r.tick(ctx)
	return r, nil
}

// set adds a peer or changes its timers.
func (r *bfdRunner) set(peer netip.Addr, cfg bfd.Config) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.peers[peer]; ok {
		p.sess.SetConfig(cfg)
		return nil
	}
	var tx *net.UDPConn
	var err error
	for range 16 {
		port := bfd.SourcePortMin + rand.IntN(65536-bfd.SourcePortMin)
		d := net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.local, uint16(port))), Control: bindControl(r.iface, 255)}
		var c net.Conn
		c, err = d.Dial(udpNetwork(peer), netip.AddrPortFrom(peer, bfd.ControlPort).String())
		if err == nil {
			tx = c.(*net.UDPConn)
			break
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("bfd: socket to %s: %w", peer, err)
	}
	r.peers[peer] = &bfdPeer{sess: bfd.NewSession(cfg, newDiscriminator()), tx: tx}
	return nil
}

// remove ends a peer's session, telling it (AdminDown).
func (r *bfdRunner) remove(peer netip.Addr) {
	r.mu.Lock()
	p, ok := r.peers[peer]
	delete(r.peers, peer)
	r.mu.Unlock()
	if ok {
		p.sess.Shutdown()
		r.send(p, time.Now())
		p.tx.Close()
	}
}

// state is a peer's session state (Down for an unknown peer).
func (r *bfdRunner) state(peer netip.Addr) bfd.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.peers[peer]; ok {
		return p.sess.State()
	}
	return bfd.Down
}

// stop ends every session and the runner.
func (r *bfdRunner) stop() {
	r.mu.Lock()
	peers := make([]netip.Addr, 0, len(r.peers))
	for a := range r.peers {
		peers = append(peers, a)
	}
	r.mu.Unlock()
	for _, a := range peers {
		r.remove(a)
	}
	r.cancel()
	r.rx.Close()
	r.wg.Wait()
}

// send sends the session's next packet. r.mu need not be held: the
// session is read under it by the callers.
func (r *bfdRunner) send(p *bfdPeer, now time.Time) {
	pkt := bfd.Append(make([]byte, 0, bfd.PacketLen), p.sess.Next(now))
	if _, err := p.tx.Write(pkt); err != nil {
		r.log.Debug("bfd: send", "err", err)
	}
}

// tick sends the periodic packets and expires silent sessions, every
// 10 ms (a tenth of the fastest sensible interval).
func (r *bfdRunner) tick(ctx context.Context) {
	defer r.wg.Done()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		// After a pause of the agent's own (not scheduled, a GC), the
		// peers' packets of that time may still be unread: no session is
		// judged on this round.
		stalled := now.Sub(last) > 50*time.Millisecond
		last = now
		type change struct {
			peer     netip.Addr
			old, cur bfd.State
		}
		var changes []change
		r.mu.Lock()
		// A packet waiting in the socket is news the receiver has not read
		// yet (the agent was not scheduled for a while): no session
		// expires before it is.
		waiting := stalled || r.pending()
		for a, p := range r.peers {
			old := p.sess.State()
			if (!waiting || !p.sess.Expiring(now)) && p.sess.Tick(now) {
				changes = append(changes, change{a, old, p.sess.State()})
			}
			if p.sess.Due(now) {
				pkt := bfd.Append(make([]byte, 0, bfd.PacketLen), p.sess.Next(now))
				if _, err := p.tx.Write(pkt); err != nil {
					r.log.Debug("bfd: send", "peer", a, "err", err)
				}
			}
		}
		r.mu.Unlock()
		for _, c := range changes {
			r.onState(c.peer, c.old, c.cur)
		}
	}
}

// pending reports whether a datagram waits in the receiving socket.
func (r *bfdRunner) pending() bool {
	sc, ok := r.rx.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	_ = raw.Control(func(fd uintptr) { n, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
	return n > 0
}

// receive reads control packets until the socket is closed.
func (r *bfdRunner) receive() {
	defer r.wg.Done()
	buf := make([]byte, 128)
	for {
		var n, ttl int
		var src net.Addr
		var err error
		if r.rx4 != nil {
			var cm *ipv4.ControlMessage
			n, cm, src, err = r.rx4.ReadFrom(buf)
			if cm != nil {
				ttl = cm.TTL
			}
		} else {
			var cm *ipv6.ControlMessage
			n, cm, src, err = r.rx6.ReadFrom(buf)
			if cm != nil {
				ttl = cm.HopLimit
			}
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok || ttl != 255 {
			continue
		}
		pkt, err := bfd.Decode(buf[:n])
		if err != nil {
			continue
		}
		peer := ua.AddrPort().Addr().Unmap()
		now := time.Now()
		r.mu.Lock()
		p, ok := r.peers[peer]
		if !ok {
			r.mu.Unlock()
			continue
		}
		old := p.sess.State()
		changed, sendNow := p.sess.Receive(pkt, now)
		cur := p.sess.State()
		if sendNow {
			r.send(p, now)
		}
		r.mu.Unlock()
		if changed {
			r.onState(peer, old, cur)
		}
	}
}
