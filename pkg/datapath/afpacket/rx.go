//go:build linux

package afpacket

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// TPACKET_V2 RX ring layout (Documentation/networking/packet_mmap.rst):
//
//	ring  = blocks of blockSize bytes, each holding blockSize/FrameSize slots
//	slot  = tpacket2_hdr, sockaddr_ll, padding, [virtio_net_hdr], frame at tp_mac
//
// The kernel fills slots strictly in order and hands each to us on its own
// by setting tp_status to TP_STATUS_USER, waking a poller at once; we hand
// it back by storing TP_STATUS_KERNEL. Ownership moves through tp_status
// alone, so it is read and written atomically.
//
// A frame longer than a slot (a GSO super-frame of up to 64 KiB from a
// stack with TSO, or a jumbo frame) is not lost: with PACKET_COPY_THRESH the
// kernel also queues the whole packet on the socket and marks the slot
// TP_STATUS_COPY, and we read it with recvmsg(2) in its turn.
const (
	tp2HdrLen = unix.SizeofTpacket2Hdr
	// offset of sll_pkttype: after sll_family, sll_protocol (2 each), sll_ifindex (4), sll_hatype (2).
	pkttypeOff = tp2HdrLen + 10
	// slotOverhead is what precedes tp_mac in a slot for Ethernet:
	// TPACKET_ALIGN(tpacket2_hdr + sockaddr_ll + 14) + a virtio_net_hdr,
	// minus the 14-byte Ethernet header (af_packet.c tpacket_rcv).
	slotOverhead = (tp2HdrLen+unix.SizeofSockaddrLinklayer+ethHdrLen+unix.TPACKET_ALIGNMENT-1)&^(unix.TPACKET_ALIGNMENT-1) + offload.HdrLen - ethHdrLen
	// minFrameSize is the smallest slot the kernel accepts (TPACKET2_HDRLEN),
	// rounded up to TPACKET_ALIGNMENT.
	minFrameSize = (tp2HdrLen + unix.SizeofSockaddrLinklayer + unix.TPACKET_ALIGNMENT - 1) &^ (unix.TPACKET_ALIGNMENT - 1)

	ethAddrsLen = 12 // destination + source MAC, the bytes that precede a VLAN tag
	vlanTagLen  = 4

	statusCopy = unix.TP_STATUS_COPY
)

// FrameSizeFor returns the ring slot size that holds a frame of an
// interface of IP MTU mtu (Ethernet header and two VLAN tags included)
// without the copy path.
func FrameSizeFor(mtu int) int {
	n := slotOverhead + ethHdrLen + 2*vlanTagLen + mtu
	return (n + unix.TPACKET_ALIGNMENT - 1) &^ (unix.TPACKET_ALIGNMENT - 1)
}

type rxRing struct {
	ring      []byte
	frameSize int
	perBlock  int // slots per block
	blockSize int
	n         int // slots
	head      int // next slot to read
	vnet      bool
}

func (r *rxRing) init(ring []byte, frameSize, blockSize, n int, vnet bool) {
	*r = rxRing{ring: ring, frameSize: frameSize, blockSize: blockSize, perBlock: blockSize / frameSize, n: n, vnet: vnet}
}

func (r *rxRing) slotOff(i int) int {
	return i/r.perBlock*r.blockSize + i%r.perBlock*r.frameSize
}

func (r *rxRing) hdr(off int) *unix.Tpacket2Hdr {
	return (*unix.Tpacket2Hdr)(unsafe.Pointer(&r.ring[off]))
}

// ready reports whether the head slot is ours, without consuming it.
func (r *rxRing) ready() bool {
	return atomic.LoadUint32(&r.hdr(r.slotOff(r.head)).Status)&unix.TP_STATUS_USER != 0
}

// rxFrame describes one received frame still inside the ring.
type rxFrame struct {
	slot    int    // ring offset of the slot
	off     int    // ring offset of the frame's first byte (tp_mac)
	snaplen int    // bytes present in the ring
	wirelen int    // bytes on the wire; > snaplen means truncated or copied
	copied  bool   // TP_STATUS_COPY: the whole frame waits in the socket's queue
	vlan    bool   // the kernel stripped an outer VLAN tag into tci/tpid
	tci     uint16 // valid iff vlan
	tpid    uint16 // valid iff vlan
	hdr     offload.Hdr
}

// peek returns the head frame without consuming it, skipping (and
// releasing) our own and other outgoing frames. ok is false when the head
// slot is still the kernel's.
func (r *rxRing) peek() (f rxFrame, ok bool) {
	for {
		off := r.slotOff(r.head)
		h := r.hdr(off)
		status := atomic.LoadUint32(&h.Status)
		if status&unix.TP_STATUS_USER == 0 {
			return f, false
		}
		// Belt and braces for kernels without PACKET_IGNORE_OUTGOING.
		if r.ring[off+pkttypeOff] == unix.PACKET_OUTGOING {
			r.advance(off)
			continue
		}
		f = rxFrame{slot: off, off: off + int(h.Mac), snaplen: int(h.Snaplen), wirelen: int(h.Len), copied: status&statusCopy != 0}
		if status&unix.TP_STATUS_VLAN_VALID != 0 {
			f.vlan, f.tci, f.tpid = true, h.Vlan_tci, packet.EtherTypeVLAN
			if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
				f.tpid = h.Vlan_tpid
			}
		}
		if r.vnet && int(h.Mac) >= tp2HdrLen+unix.SizeofSockaddrLinklayer+offload.HdrLen {
			f.hdr = offload.Decode(r.ring[f.off-offload.HdrLen : f.off])
		}
		return f, true
	}
}

// advance hands the slot at ring offset off (the head) back to the kernel.
func (r *rxRing) advance(off int) {
	atomic.StoreUint32(&r.hdr(off).Status, unix.TP_STATUS_KERNEL)
	r.head++
	if r.head == r.n {
		r.head = 0
	}
}

// copyTo copies f into dst, re-inserting a stripped VLAN tag, and returns the
// length, or false if it does not fit.
func (r *rxRing) copyTo(dst []byte, f rxFrame) (int, bool) {
	src := r.ring[f.off : f.off+f.snaplen]
	if !f.vlan {
		if len(src) > len(dst) {
			return 0, false
		}
		return copy(dst, src), true
	}
	n := len(src) + vlanTagLen
	if len(src) < ethAddrsLen || n > len(dst) {
		return 0, false
	}
	copy(dst, src[:ethAddrsLen])
	binary.BigEndian.PutUint16(dst[ethAddrsLen:], f.tpid)
	binary.BigEndian.PutUint16(dst[ethAddrsLen+2:], f.tci)
	copy(dst[ethAddrsLen+vlanTagLen:], src[ethAddrsLen:])
	return n, true
}

// Batch is a receive batch for Receive: buffers the caller owns and what
// Receive put in them.
type Batch struct {
	// Bufs holds one buffer per frame; their number bounds the batch.
	Bufs [][]byte
	// Jumbo takes the one frame per batch that is longer than its Bufs
	// entry: a GSO super-frame (up to 64 KiB plus tags) or a frame over
	// the ring's slot size. Nil: such frames are dropped and counted in
	// Stats.RxTruncated.
	Jumbo []byte
	// Sizes[i] is the length of frame i; len(Sizes) >= len(Bufs).
	Sizes []int
	// Hdrs[i] is frame i's offload state, with Options.VnetHdr (zero
	// otherwise). Nil: not reported. Else len(Hdrs) >= len(Bufs).
	Hdrs []offload.Hdr
	// JumboIndex is the index of the frame that is in Jumbo rather than
	// in its Bufs entry, or -1.
	JumboIndex int
}

// Frame returns frame i of the batch, in Jumbo or in Bufs[i].
func (b *Batch) Frame(i int) []byte {
	if i == b.JumboIndex {
		return b.Jumbo[:b.Sizes[i]]
	}
	return b.Bufs[i][:b.Sizes[i]]
}

// ReadBatch waits for frames and copies up to len(bufs) of them into bufs,
// setting sizes[i] to the length of bufs[i]'s frame; it returns how many.
// It blocks until at least one frame is available, Close is called
// (ErrClosed), or Options.PollTimeout passes (ErrTimeout).
//
// Frames are exactly as on the wire: a VLAN tag the kernel stripped on
// receive (802.1Q or 802.1ad) is put back after the source MAC. Frames longer
// than their buffer are dropped and counted in Stats.RxTruncated, so buffers
// should hold the interface MTU + 18 (Ethernet header and one VLAN tag).
// Offload state (Options.VnetHdr) is not reported: use Receive.
// ReadBatch does not allocate.
func (p *Port) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	b := Batch{Bufs: bufs, Sizes: sizes}
	return p.Receive(&b)
}

// Receive is ReadBatch with the rest of what the kernel says about each
// frame: its offload state (a partial checksum, GSO) and, in b.Jumbo, a
// frame too long for its buffer. It does not allocate.
func (p *Port) Receive(b *Batch) (int, error) {
	b.JumboIndex = -1
	bufs := b.Bufs
	if len(b.Sizes) < len(bufs) {
		bufs = bufs[:len(b.Sizes)]
	}
	if b.Hdrs != nil && len(b.Hdrs) < len(bufs) {
		bufs = bufs[:len(b.Hdrs)]
	}
	if len(bufs) == 0 {
		return 0, nil
	}
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	deadline := p.deadline()
	for {
		if p.closed.Load() {
			return 0, ErrClosed
		}
		n := 0
	fill:
		for n < len(bufs) {
			f, ok := p.rx.peek()
			if !ok {
				break
			}
			m, fits := 0, false
			switch {
			case f.copied:
				if len(b.Jumbo) > 0 && b.JumboIndex >= 0 {
					// One jumbo frame per batch: this one waits for the
					// next call, in the ring, in order.
					break fill
				}
				if len(b.Jumbo) > 0 {
					if m, fits = p.recvCopied(b.Jumbo, &f); fits {
						b.JumboIndex = n
					}
				} else {
					p.discardCopied()
				}
			case f.snaplen < f.wirelen:
			default:
				m, fits = p.rx.copyTo(bufs[n], f)
			}
			p.rx.advance(f.slot)
			if !fits {
				p.cnt.rxTruncated.Add(1)
				continue
			}
			b.Sizes[n] = m
			if b.Hdrs != nil {
				b.Hdrs[n] = f.hdr
			}
			n++
		}
		if n > 0 {
			p.cnt.rxPackets.Add(uint64(n))
			p.lastBatch = n
			return n, nil
		}
		if err := p.sleepRX(deadline); err != nil {
			return 0, err
		}
	}
}

// recvCopied reads the whole frame of a TP_STATUS_COPY slot from the
// socket's queue into dst, with its VLAN tag and its virtio_net_hdr taken
// from the slot (the same packet's). The kernel queues exactly the slots it
// marks, in ring order, so the queue's head is this frame.
func (p *Port) recvCopied(dst []byte, f *rxFrame) (int, bool) {
	at := 0
	if f.vlan {
		at = vlanTagLen // room to put the tag back by moving the MACs down
	}
	if len(dst) <= at+ethAddrsLen {
		p.discardCopied()
		return 0, false
	}
	p.rxIov[1].Base = &dst[at]
	p.rxIov[1].SetLen(len(dst) - at)
	if p.vnetLen > 0 { // the header first, into rxVnet (the slot has it already)
		p.rxMsg.Iov = &p.rxIov[0]
		p.rxMsg.SetIovlen(2)
	} else {
		p.rxMsg.Iov = &p.rxIov[1]
		p.rxMsg.SetIovlen(1)
	}
	p.rxMsg.Flags = 0
	r, _, e := unix.Syscall(unix.SYS_RECVMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&p.rxMsg)), unix.MSG_DONTWAIT|unix.MSG_TRUNC)
	p.rxIov[1].Base = nil
	if e != 0 {
		return 0, false
	}
	n := int(r) - p.vnetLen
	if n < ethAddrsLen || n > len(dst)-at || p.rxMsg.Flags&unix.MSG_TRUNC != 0 {
		return 0, false
	}
	if f.vlan {
		copy(dst[0:ethAddrsLen], dst[at:at+ethAddrsLen])
		binary.BigEndian.PutUint16(dst[ethAddrsLen:], f.tpid)
		binary.BigEndian.PutUint16(dst[ethAddrsLen+2:], f.tci)
		n += vlanTagLen
	}
	return n, true
}

// discardCopied drops the head of the socket's queue: the whole frame of a
// copied slot that the caller has no room for.
func (p *Port) discardCopied() {
	p.rxMsg.Iov = &p.rxIov[0]
	p.rxMsg.SetIovlen(1)
	_, _, _ = unix.Syscall(unix.SYS_RECVMSG, uintptr(p.fd), uintptr(unsafe.Pointer(&p.rxMsg)), unix.MSG_DONTWAIT|unix.MSG_TRUNC)
}

func (p *Port) deadline() time.Time {
	if p.pollTO <= 0 {
		return time.Time{}
	}
	return time.Now().Add(p.pollTO)
}

// sleepRX waits until the kernel hands over a slot.
//
// TPACKET_V2 wakes a poller for every frame, which at high rates costs a
// wakeup per frame where V3 cost one per block. So after a batch of at
// least moderateFrom frames the receiver first sleeps Options.Moderation
// and lets frames gather, as a NIC's interrupt moderation does; after a
// small batch (a lone request, an ACK) it polls at once, and the next frame
// wakes it as soon as it lands. It never spins: on a host whose cores are
// shared by many ports and other work, a spin after every frame measured
// costlier (in the end-to-end suite's pings) than the wakeups it saves.
// Before sleeping in poll it folds the kernel's drop counter into Stats:
// the ring just ran dry, so this is cheap relative to the wait and keeps
// RxDrops fresh without a timer.
func (p *Port) sleepRX(deadline time.Time) error {
	if p.moderation > 0 && p.lastBatch >= moderateFrom {
		p.lastBatch = 0
		ts := unix.NsecToTimespec(int64(p.moderation))
		_ = unix.Nanosleep(&ts, nil) // EINTR: wake early, which is harmless
		if p.rx.ready() {
			return nil
		}
	}
	p.syncKernelStats()
	return p.waitRX(deadline)
}

// moderateFrom is the batch size from which the receiver moderates its
// wakeups: a stream rather than a lone exchange.
const moderateFrom = 8
