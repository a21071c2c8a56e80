//go:build linux

package userspace

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// tunnelQueue is the sendmmsg batch of one tunnel socket. Each message is
// two iovecs, the tunnel header (in the flow's action) and the frame, so
// encapsulation copies nothing.
type tunnelQueue struct {
	n     int
	bytes int
	msgs  [maxQueued]unix.Mmsghdr
	iovs  [maxQueued][2]unix.Iovec
	names [maxQueued]unix.RawSockaddrInet4
	fn    func(fd uintptr) bool // the sendmmsg loop, bound once so RawConn.Write does not allocate
	sock  *tunnelSocket         // valid during flush
	sent  int
	fail  int
	err   error
}

func (q *tunnelQueue) init() {
	for i := range q.msgs {
		q.msgs[i].Hdr.Iov = &q.iovs[i][0]
		q.msgs[i].Hdr.SetIovlen(2)
		q.msgs[i].Hdr.Name = (*byte)(unsafe.Pointer(&q.names[i]))
		q.msgs[i].Hdr.Namelen = unix.SizeofSockaddrInet4
	}
	q.fn = q.send
}

func (q *tunnelQueue) add(a *action, frame []byte) {
	i := q.n
	q.iovs[i][0].Base = &a.hdr[0]
	q.iovs[i][0].SetLen(len(a.hdr))
	q.iovs[i][1].Base = &frame[0]
	q.iovs[i][1].SetLen(len(frame))
	q.names[i] = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: a.dst}
	q.bytes += len(frame)
	q.n++
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
	q.sock, q.sent, q.fail, q.err = s, 0, 0, nil
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
// and counted, so one bad destination does not block the rest. It returns
// false only to wait for buffer space.
func (q *tunnelQueue) send(fd uintptr) bool {
	for j := q.sent + q.fail; j < q.n; j = q.sent + q.fail {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&q.msgs[j])), uintptr(q.n-j), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			q.sent += int(r)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		case unix.EBADF:
			q.fail = q.n - q.sent
			q.err = e
		default:
			q.fail++
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
	q.n, q.bytes, q.sock = 0, 0, nil
}
