//go:build linux

package userspace

import (
	"encoding/binary"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/packet"
)

// Port rate limits (SetPortQoS) and port mirrors' remote copies
// (flow.ActMirror).

// SetPortQoS implements datapath.Datapath: the egress bucket polices
// what the port's reader receives, the ingress bucket what any worker
// queues to the port.
func (dp *Datapath) SetPortQoS(portID string, q datapath.PortQoS) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return datapath.ErrClosed
	}
	p := dp.ports.Load().byID[portID]
	if p == nil {
		return fmt.Errorf("datapath: set port QoS: port %s: %w", portID, datapath.ErrUnknownPort)
	}
	if p.qos == q {
		return nil // unchanged: keep the buckets' tokens
	}
	p.qos = q
	p.egressPol.Store(datapath.NewPolicer(q.EgressKbps, q.EgressBurstKbit))
	p.ingressPol.Store(datapath.NewPolicer(q.IngressKbps, q.IngressBurstKbit))
	return nil
}

// mirrorSender is the raw IPv4 socket mirrors' copies leave by: protocol
// IPPROTO_RAW, so it receives nothing and the datapath writes the IP
// header (the source is the host's underlay address).
type mirrorSender struct {
	once sync.Once
	fd   int
	err  error
	mu   sync.Mutex
	seq  uint32 // ERSPAN sequence numbers
	buf  []byte
}

// close closes the socket if it was opened: once more makes sure it
// will not be.
func (m *mirrorSender) close() error {
	opened := true
	m.once.Do(func() { opened, m.err = false, datapath.ErrClosed })
	if !opened || m.fd < 0 {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	fd := m.fd
	m.fd, m.err = -1, datapath.ErrClosed
	return unix.Close(fd)
}

func (dp *Datapath) mirrorSocket() (int, error) {
	m := &dp.mirror
	m.once.Do(func() {
		m.fd = -1
		m.err = dp.inNetns(func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
			if err == nil {
				m.fd = fd
			}
			return err
		})
		if m.err != nil {
			m.err = fmt.Errorf("datapath: mirror socket: %w", m.err)
		}
		m.buf = make([]byte, 20+packet.MirrorHdrMax+tunnelSlotSize)
	})
	return m.fd, m.err
}

// sendMirror sends a copy of frame to a mirror's remote endpoint, GRE or
// ERSPAN II in IPv4 protocol 47. Mirrors are rare and each copy is one
// sendto, off the batched path.
func (w *worker) sendMirror(a *action, frame []byte) {
	dp := w.dp
	fd, err := dp.mirrorSocket()
	if err != nil {
		w.drops.add(rMirrorTx, 1)
		return
	}
	m := &dp.mirror
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fd < 0 {
		w.drops.add(rMirrorTx, 1)
		return
	}
	m.seq++
	n, err := packet.EncapMirror(m.buf[20:], frame, a.Tunnel, a.TunnelKey, m.seq)
	if err != nil {
		w.drops.add(rMirrorTx, 1)
		return
	}
	ip := m.buf[:20]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(20+n))
	binary.BigEndian.PutUint32(ip[4:], 0x4000) // ID 0 (the kernel fills it), DF
	ip[8], ip[9] = 64, 47
	binary.BigEndian.PutUint16(ip[10:], 0) // the kernel fills the checksum
	src := [4]byte{}
	if l := dp.tun.Load().cfg.LocalIP; l.Is4() {
		src = l.As4()
	}
	copy(ip[12:16], src[:])
	copy(ip[16:20], a.dst[:])
	if err := unix.Sendto(fd, m.buf[:20+n], 0, &unix.SockaddrInet4{Addr: a.dst}); err != nil {
		w.drops.add(rMirrorTx, 1)
	}
}

// compileMirror checks an ActMirror and resolves its destination.
func compileMirror(i int, a *action) error {
	if a.Tunnel != packet.TunnelGRE && a.Tunnel != packet.TunnelERSPAN {
		return fmt.Errorf("action %d: mirror: unknown encapsulation %s", i, a.Tunnel)
	}
	if !a.Underlay.Is4() && !a.Underlay.Is4In6() {
		return fmt.Errorf("action %d: mirror to %q: only IPv4 endpoints are supported", i, a.Underlay)
	}
	a.dst = a.Underlay.Unmap().As4()
	return nil
}
