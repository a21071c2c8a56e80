//go:build linux

package userspace

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// tunnelReceiver is a tunnel socket's receive state: recvmmsg buffers and
// the worker that delivers to local ports.
type tunnelReceiver struct {
	w     *worker
	s     *tunnelSocket
	msgs  [tunnelBatch]unix.Mmsghdr
	iovs  [tunnelBatch]unix.Iovec
	names [tunnelBatch]unix.RawSockaddrInet4
	ctl   [tunnelBatch][cmsgGROLen]byte
	bufs  [][]byte
	batch int // messages per recvmmsg: len(bufs)
	n     int
	err   error
	fn    func(fd uintptr) bool

	// Merging consecutive TCP segments into super-frames (offload.go).
	dec    packet.Decoder
	pkt    packet.Parsed
	co     offload.Coalescer
	coPort *port    // where the super-frame being merged goes
	mbufs  [][]byte // super-frame buffers, grown on demand up to maxMerged
	nMbufs int
}

// maxMerged bounds the super-frames a tunnel receiver builds before it
// flushes what it queued: 8 buffers of 64 KiB.
const maxMerged = 8

// cmsgGROLen is unix.CmsgSpace(4): the UDP_GRO control message, an int.
const cmsgGROLen = unix.SizeofCmsghdr + 8

// tunnelLoop receives on s until it is closed. Frames are delivered by
// tunnel key without simulation or flow lookup: the sender's simulation
// already chose the egress port, and the key names it.
func (dp *Datapath) tunnelLoop(s *tunnelSocket) {
	defer dp.wg.Done()
	defer close(s.done)
	r := &tunnelReceiver{w: newWorker(dp, nil, 0, minSlotSize), s: s}
	if s.gro {
		r.bufs = makeSlots(groBatch, groSlotSize)
	} else {
		r.bufs = makeSlots(tunnelBatch, tunnelSlotSize)
	}
	r.batch = len(r.bufs)
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
		for i := range r.batch {
			r.iovs[i].Base = &r.bufs[i][0]
			r.iovs[i].SetLen(len(r.bufs[i]))
			r.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
			r.msgs[i].Hdr.Flags = 0
			if s.gro {
				r.msgs[i].Hdr.Control = &r.ctl[i][0]
				r.msgs[i].Hdr.SetControllen(cmsgGROLen)
			}
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
		n, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&r.msgs[0])), uintptr(r.batch), unix.MSG_DONTWAIT, 0, 0)
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
// inner frames out of the ports their keys name. A receive that UDP_GRO
// made of a run of datagrams is cut back into them.
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
		step := len(b)
		if seg := r.groSize(i); seg > 0 && seg < step {
			step = seg
		}
		for off := 0; off < len(b); off += step {
			d := b[off:min(off+step, len(b))]
			if p, inner := r.datagram(c, ports, i, d); p != nil {
				pkts++
				bytes += uint64(len(inner))
				r.merge(p, inner)
			}
		}
	}
	if r.co.Len() > 0 {
		r.finishMerge()
	}
	c.rxPackets.Add(pkts)
	c.rxBytes.Add(bytes)
	w.flush()
	r.nMbufs = 0
}

// merge queues an inner frame for port p, merging consecutive segments of
// one TCP connection into a super-frame as GRO would: the peer's datapath
// cut a VM's super-frame into segments to cross the underlay, and the
// stack they go to takes them back whole for a fraction of the cost (one
// packet through AF_PACKET, the veth or tap and TCP instead of dozens).
func (r *tunnelReceiver) merge(p *port, inner []byte) {
	r.dec.Decode(&r.pkt, inner)
	if r.co.Len() > 0 {
		if p == r.coPort && r.co.Add(&r.pkt) {
			return
		}
		r.finishMerge()
	}
	if r.pkt.Drop == packet.DropNone && r.pkt.L4 == packet.L4TCP && r.pkt.L3End > r.pkt.PayloadOff {
		if r.co.Start(r.mergeBuf(), &r.pkt) {
			r.coPort = p
			return
		}
		r.nMbufs-- // not taken
	}
	r.w.queueLocal(p, inner, offload.Hdr{})
}

// finishMerge queues the super-frame being merged (a lone segment as it
// was, without offload state).
func (r *tunnelReceiver) finishMerge() {
	f, h := r.co.Finish()
	r.w.queueLocal(r.coPort, f, h)
}

// mergeBuf returns a free super-frame buffer, flushing what is queued
// first if all are in use.
func (r *tunnelReceiver) mergeBuf() []byte {
	if r.nMbufs == len(r.mbufs) {
		if len(r.mbufs) == maxMerged {
			r.w.flush()
			r.nMbufs = 0
		} else {
			r.mbufs = append(r.mbufs, make([]byte, maxFrame))
		}
	}
	r.nMbufs++
	return r.mbufs[r.nMbufs-1]
}

// groSize returns the datagram size of message i when UDP_GRO joined
// several, 0 otherwise.
func (r *tunnelReceiver) groSize(i int) int {
	h := &r.msgs[i].Hdr
	if !r.s.gro || h.Controllen < uint64(unix.CmsgLen(4)) {
		return 0
	}
	cm := (*unix.Cmsghdr)(unsafe.Pointer(&r.ctl[i][0]))
	if cm.Level != unix.SOL_UDP || cm.Type != unix.UDP_GRO {
		return 0
	}
	return int(binary.NativeEndian.Uint32(r.ctl[i][unix.CmsgLen(0):]))
}

// datagram decapsulates one tunnel datagram of message i and returns the
// port its inner frame leaves by, or nil when it was dropped (counted) or
// was a flow-state packet (handed over).
func (r *tunnelReceiver) datagram(c *tunnelCounters, ports *portSet, i int, b []byte) (*port, []byte) {
	w := r.w
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
			return nil, nil
		}
		key, inner, err = packet.DecapGRE(b[int(b[0]&0x0f)*4:])
	}
	if err == nil && (key == packet.StateTunnelKey || key == packet.ProbeTunnelKey) {
		r.deliverReserved(c, key, netip.AddrFrom4(r.names[i].Addr), inner)
		return nil, nil
	}
	if err != nil || len(inner) < ethHdrLen {
		w.drops.add(rTunMalformed, 1)
		return nil, nil
	}
	p := ports.byKey[key]
	if p == nil {
		w.drops.add(rTunUnknownKey, 1)
		return nil, nil
	}
	return p, inner
}

// deliverReserved hands a flow-state packet to the StateHandler, a probe
// to the ProbeHandler, and answers an echo request itself. It runs between
// the data packets of its batch, in arrival order: data queued before it
// is still queued (sent at the end of the batch), which is fine, since
// only packets after the state may depend on it.
func (r *tunnelReceiver) deliverReserved(c *tunnelCounters, key uint32, from netip.Addr, payload []byte) {
	dp := r.w.dp
	if key == packet.ProbeTunnelKey && packet.AnswerEcho(payload) {
		if err := dp.sendReserved(from, payload, packet.ProbeTunnelKey, "echo reply", r.s.kind); err != nil {
			dp.log.Debug("datapath: echo reply", "peer", from, "err", err)
		}
		return
	}
	handled, drop, rx := dp.state != nil, rTunState, &c.stateRx
	if key == packet.ProbeTunnelKey {
		handled, drop, rx = dp.probe != nil, rTunProbe, &c.probeRx
	}
	if !handled || len(payload) == 0 {
		r.w.drops.add(drop, 1)
		return
	}
	rx.Add(1)
	if key == packet.ProbeTunnelKey {
		dp.probe.Probe(from, payload)
	} else {
		dp.state.State(from, payload)
	}
}
