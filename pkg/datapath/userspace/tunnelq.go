//go:build linux

package userspace

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/packet"
)

// tunnelQueue is the sendmmsg batch of one tunnel socket. Each packet is
// two iovecs, the tunnel header (in the flow's action) and the frame, so
// encapsulation copies nothing.
//
// On a VXLAN socket, a run of packets to one peer of equal length (the
// last may be shorter) — the segments of a super-frame, or any stream of
// equal frames — goes as one message with UDP_SEGMENT: the kernel cuts it
// into datagrams as late as it can (in the NIC, or whole across a veth), so
// one trip through the UDP and IP stack carries up to udpMaxSegments
// packets instead of one. The receiver's UDP_GRO takes such runs whole too
// (tunnel.go).
type tunnelQueue struct {
	n     int
	bytes int
	iovs  [maxQueued][2]unix.Iovec
	lens  [maxQueued]int
	names [maxQueued]unix.RawSockaddrInet4

	// Messages: one per packet, or one per run of packets.
	msgs  [maxQueued]unix.Mmsghdr
	first [maxQueued]int // the message's first packet
	count [maxQueued]int // and how many it carries
	ctl   [maxQueued][cmsgSegmentLen]byte
	nMsgs int
	next  int // the next message to send

	gso  bool                  // group runs into UDP_SEGMENT messages (VXLAN)
	mtu  int                   // underlay MTU, bounding a segment; 0: unknown
	fn   func(fd uintptr) bool // the sendmmsg loop, bound once so RawConn.Write does not allocate
	sock *tunnelSocket         // valid during flush
	sent int
	fail int
	err  error
}

const (
	// udpMaxSegments is the kernel's UDP_MAX_SEGMENTS of older kernels
	// (newer ones allow 128).
	udpMaxSegments = 64
	// udpMaxPayload is the most a UDP_SEGMENT message may carry: an IPv4
	// datagram's 65535 bytes less the IP and UDP headers, with a margin.
	udpMaxPayload = 65000
	// outerHdrs is the outer IPv4 and UDP headers in front of a VXLAN
	// datagram.
	outerHdrs = 28
)

// cmsgSegmentLen is unix.CmsgSpace(2): a cmsghdr and a u16, aligned.
const cmsgSegmentLen = unix.SizeofCmsghdr + 8

func (q *tunnelQueue) init() {
	q.fn = q.send
}

func (q *tunnelQueue) add(a *action, frame []byte) {
	i := q.n
	q.iovs[i][0].Base = &a.hdr[0]
	q.iovs[i][0].SetLen(len(a.hdr))
	q.iovs[i][1].Base = &frame[0]
	q.iovs[i][1].SetLen(len(frame))
	q.lens[i] = len(a.hdr) + len(frame)
	q.names[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.dst}
	q.bytes += len(frame)
	q.n++
}

// build lays the packets from p on out as messages, from message m on:
// runs grouped if gso, else one message per packet.
func (q *tunnelQueue) build(p, m int, gso bool) {
	for p < q.n {
		k := 1
		if gso {
			k = q.runLen(p)
		}
		h := &q.msgs[m].Hdr
		*h = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&q.names[p])), Namelen: unix.SizeofSockaddrInet4, Iov: &q.iovs[p][0]}
		h.SetIovlen(2 * k)
		if k > 1 {
			c := q.ctl[m][:]
			cm := (*unix.Cmsghdr)(unsafe.Pointer(&c[0]))
			cm.Level, cm.Type = unix.SOL_UDP, unix.UDP_SEGMENT
			cm.SetLen(unix.CmsgLen(2))
			binary.NativeEndian.PutUint16(c[unix.CmsgLen(0):], uint16(q.lens[p]))
			h.Control = &c[0]
			h.SetControllen(cmsgSegmentLen)
		}
		q.first[m], q.count[m] = p, k
		p += k
		m++
	}
	q.nMsgs = m
}

// runLen returns how many packets from p on can go as one UDP_SEGMENT
// message: same peer, same length (the last may be shorter), within the
// kernel's limits and the underlay MTU.
func (q *tunnelQueue) runLen(p int) int {
	size := q.lens[p]
	if q.mtu > 0 && size+outerHdrs > q.mtu {
		return 1 // the kernel refuses segments over the path MTU
	}
	k, total := 1, size
	for i := p + 1; i < q.n && k < udpMaxSegments; i++ {
		if q.names[i].Addr != q.names[p].Addr || q.lens[i] > size || total+q.lens[i] > udpMaxPayload {
			break
		}
		k++
		total += q.lens[i]
		if q.lens[i] < size {
			break // a shorter one ends the run
		}
	}
	return k
}

// flush sends the queued packets on s, counting them in c; a nil s means
// the encapsulation is not enabled.
func (q *tunnelQueue) flush(w *worker, s *tunnelSocket, c *tunnelCounters) error {
	if q.n == 0 {
		return nil
	}
	defer q.reset()
	if s == nil {
		w.drops.add(rTunDisabled, uint64(q.n))
		return errors.New("tunnel encapsulation not enabled by SetTunnels")
	}
	if s.dstPort != 0 {
		for i := range q.n {
			// sin_port is in network byte order in memory.
			*(*[2]byte)(unsafe.Pointer(&q.names[i].Port)) = [2]byte{byte(s.dstPort >> 8), byte(s.dstPort)}
		}
	}
	q.mtu = int(w.dp.underlayMTU.Load())
	q.gso = s.kind == packet.TunnelVXLAN && !s.noGSO.Load()
	q.build(0, 0, q.gso)
	q.sock, q.next, q.sent, q.fail, q.err = s, 0, 0, 0, nil
	if err := s.raw.Write(q.fn); err != nil && q.err == nil {
		q.err = err
	}
	c.txPackets.Add(uint64(q.sent))
	c.txBytes.Add(uint64(q.bytes * q.sent / q.n)) // prorated if some were refused
	if lost := q.n - q.sent; lost > 0 {
		c.txErrors.Add(uint64(lost))
		w.drops.add(rTunTxError, uint64(lost))
	}
	if q.err != nil {
		return fmt.Errorf("tunnel send: %w", q.err)
	}
	return nil
}

// send is the RawConn.Write callback: sendmmsg until every message is sent
// or refused. A message the kernel refuses (no route, too big) is skipped
// and counted, so one bad destination does not block the rest; a run the
// kernel will not segment is sent again packet by packet, and the socket
// stops grouping. It returns false only to wait for buffer space.
func (q *tunnelQueue) send(fd uintptr) bool {
	for q.next < q.nMsgs {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&q.msgs[q.next])), uintptr(q.nMsgs-q.next), unix.MSG_DONTWAIT, 0, 0)
		switch {
		case e == 0:
			for range int(r) {
				q.sent += q.count[q.next]
				q.next++
			}
		case e == unix.EINTR:
		case e == unix.EAGAIN:
			return false
		case e == unix.EBADF:
			q.fail = q.n - q.sent
			q.next = q.nMsgs
			q.err = e
		case q.count[q.next] > 1 && (e == unix.EINVAL || e == unix.EMSGSIZE || e == unix.EIO):
			// No UDP segmentation on this path (an older kernel, a path
			// MTU below the segment size): one datagram per packet.
			q.sock.noGSO.Store(true)
			q.build(q.first[q.next], q.next, false)
		default:
			q.fail += q.count[q.next]
			q.next++
			if q.err == nil {
				q.err = e
			}
		}
	}
	return true
}

func (q *tunnelQueue) reset() {
	for i := range q.n {
		q.iovs[i][0].Base, q.iovs[i][1].Base = nil, nil
	}
	for i := range q.nMsgs {
		q.msgs[i].Hdr = unix.Msghdr{}
	}
	q.n, q.bytes, q.nMsgs, q.sock = 0, 0, 0, nil
}
