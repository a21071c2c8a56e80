//go:build linux

package afpacket

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/offload"
)

const (
	ethHdrLen = 14
	txBatch   = 64 // frames per sendmmsg call
)

type txState struct {
	msgs  [txBatch]unix.Mmsghdr
	iovs  [txBatch][2]unix.Iovec // with a virtio_net_hdr: [header, frame]; else [frame]
	hdrs  [txBatch][offload.HdrLen]byte
	vnet  bool
	ready func(fd uintptr) bool // RawConn.Write callback, bound once
	woken bool
}

func (t *txState) init(vnet bool) {
	t.vnet = vnet
	for i := range t.msgs {
		if vnet {
			t.msgs[i].Hdr.Iov = &t.iovs[i][0]
			t.msgs[i].Hdr.SetIovlen(2)
			t.iovs[i][0].Base = &t.hdrs[i][0]
			t.iovs[i][0].SetLen(offload.HdrLen)
		} else {
			t.msgs[i].Hdr.Iov = &t.iovs[i][1]
			t.msgs[i].Hdr.SetIovlen(1)
		}
	}
}

// WriteBatch sends frames (complete Ethernet frames, VLAN tags included) and
// returns how many the kernel accepted. A frame that is rejected — shorter
// than an Ethernet header, over the MTU, or dropped by a busy device — is
// counted in Stats.TxErrors and skipped, so one bad frame never stalls the
// rest. err is non-nil only when the port cannot send at all (ErrClosed, or
// the interface is gone); frames after that point were not tried.
// WriteBatch does not allocate and does not retain frames.
func (p *Port) WriteBatch(frames [][]byte) (int, error) { return p.Write(frames, nil) }

// Write is WriteBatch with each frame's offload state: with hdrs[i] saying
// so (and Options.VnetHdr), frame i leaves with a partial checksum, or as a
// GSO super-frame that the kernel segments (or a device, or the peer
// stack, takes whole), as a local stack's own frames do. hdrs nil, or a
// port without VnetHdr, sends complete frames; a header on such a port is
// an error for that frame.
func (p *Port) Write(frames [][]byte, hdrs []offload.Hdr) (int, error) {
	p.txMu.Lock()
	defer p.txMu.Unlock()
	if p.closed.Load() {
		return 0, ErrClosed
	}
	sent, used := 0, 0
	defer func() { p.clearIovs(used) }()
	for i := 0; i < len(frames); {
		k := 0
		for ; i < len(frames) && k < txBatch; i++ {
			f := frames[i]
			var h offload.Hdr
			if hdrs != nil {
				h = hdrs[i]
			}
			if len(f) < ethHdrLen || !p.tx.vnet && !h.IsZero() {
				p.cnt.txErrors.Add(1)
				continue
			}
			p.tx.iovs[k][1].Base = &f[0]
			p.tx.iovs[k][1].SetLen(len(f))
			if p.tx.vnet {
				h.Encode(p.tx.hdrs[k][:])
			}
			k++
		}
		used = max(used, k)
		n, err := p.sendmmsg(k)
		sent += n
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// clearIovs drops our references to the caller's frames so that the port
// does not keep them alive for the garbage collector.
func (p *Port) clearIovs(k int) {
	for i := range k {
		p.tx.iovs[i][1].Base = nil
	}
}

// sendmmsg sends msgs[:k], skipping frames the kernel rejects one by one.
func (p *Port) sendmmsg(k int) (int, error) {
	sent, j := 0, 0
	retried := false // a frame after ENETDOWN
	for j < k {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(p.fd),
			uintptr(unsafe.Pointer(&p.tx.msgs[j])), uintptr(k-j), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			// sendmmsg reports success for the messages before a failing one;
			// the failure repeats as the first message of the next call.
			j += int(r)
			sent += int(r)
			retried = false
			p.cnt.txPackets.Add(uint64(r))
		case unix.EINTR:
		case unix.EAGAIN, unix.ENOBUFS:
			if e == unix.ENOBUFS || !p.waitTX() {
				// Qdisc or device queue full (ENOBUFS), or socket buffer still
				// full: drop this frame rather than block the datapath.
				p.cnt.txErrors.Add(1)
				j++
			}
		case unix.EBADF, unix.ENXIO, unix.ENODEV:
			return sent, fmt.Errorf("afpacket: send on %s: %w", p.name, e)
		case unix.ENETDOWN:
			// Either the interface is down, or it is up and this is the
			// socket's pending error, left by a bind while it was down (a
			// tap bound before its hypervisor set it up) or by an outage
			// since: sending reports it once and clears it, whichever
			// call gets it first. Try the frame once more: a down
			// interface refuses it again, before any error is read.
			if !retried {
				retried = true
				continue
			}
			p.cnt.txErrors.Add(1)
			j++
		default:
			// EMSGSIZE, EINVAL...: this frame only.
			p.cnt.txErrors.Add(1)
			j++
		}
		if p.closed.Load() {
			return sent, ErrClosed
		}
	}
	return sent, nil
}

// waitTX waits up to 10 ms for socket buffer space. It reports false if none
// appeared (or the port is closing), and the caller drops the frame.
func (p *Port) waitTX() bool {
	if p.closed.Load() || p.file.SetWriteDeadline(time.Now().Add(10*time.Millisecond)) != nil {
		return false
	}
	p.tx.woken = false
	err := p.rc.Write(p.tx.ready)
	return err == nil && !p.closed.Load()
}

// txIsReady is waitTX's RawConn.Write callback: the first call (the
// buffer is known full) waits, the next, after the socket reported room
// (or Close woke it), returns.
func (p *Port) txIsReady(uintptr) bool {
	if p.tx.woken {
		return true
	}
	p.tx.woken = true
	return false
}
