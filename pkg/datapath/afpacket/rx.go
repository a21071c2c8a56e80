//go:build linux

package afpacket

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/packet"
)

// TPACKET_V3 RX ring layout (Documentation/networking/packet_mmap.rst):
//
//	ring  = NumBlocks blocks of BlockSize bytes, used strictly in order
//	block = tpacket_block_desc { version, offset_to_priv, tpacket_hdr_v1 } then packets
//	packet = tpacket3_hdr, sockaddr_ll, padding, frame bytes at tp_mac
//
// The kernel fills a block with packets of any size, then "retires" it to us
// by setting block_status to TP_STATUS_USER, either when it is full or when
// BlockTimeout passes. We read every packet in it and hand the block back by
// storing TP_STATUS_KERNEL. Ownership moves through block_status alone, so it
// is read and written atomically; nothing else in the block is shared while
// we own it.
const (
	// tpacket3_hdr occupies TPACKET_ALIGN(48) bytes; sockaddr_ll follows it.
	tp3HdrLen = unix.SizeofTpacket3Hdr
	// offset of sll_pkttype: after sll_family, sll_protocol (2 each), sll_ifindex (4), sll_hatype (2).
	pkttypeOff = tp3HdrLen + 10
	// minFrameSize is TPACKET3_HDRLEN (header + sockaddr_ll), the smallest slot
	// the kernel accepts, rounded up to TPACKET_ALIGNMENT.
	minFrameSize = (tp3HdrLen + unix.SizeofSockaddrLinklayer + unix.TPACKET_ALIGNMENT - 1) &^ (unix.TPACKET_ALIGNMENT - 1)

	ethAddrsLen = 12 // destination + source MAC, the bytes that precede a VLAN tag
	vlanTagLen  = 4
)

type rxRing struct {
	ring      []byte
	blockSize int
	numBlocks int

	block int    // block we read from next (or are reading)
	open  bool   // block is ours (TP_STATUS_USER) and partly consumed
	left  uint32 // packets not yet consumed in the open block
	off   int    // ring offset of the next packet's tpacket3_hdr
}

func (r *rxRing) init(ring []byte, blockSize, numBlocks int) {
	*r = rxRing{ring: ring, blockSize: blockSize, numBlocks: numBlocks}
}

func (r *rxRing) blockHdr(i int) *unix.TpacketHdrV1 {
	desc := (*unix.TpacketBlockDesc)(unsafe.Pointer(&r.ring[i*r.blockSize]))
	return (*unix.TpacketHdrV1)(unsafe.Pointer(&desc.Hdr[0]))
}

// rxFrame describes one received frame still inside the ring.
type rxFrame struct {
	off     int    // ring offset of the frame's first byte (tp_mac)
	snaplen int    // bytes present in the ring
	wirelen int    // bytes on the wire; > snaplen means truncated
	vlan    bool   // the kernel stripped an outer VLAN tag into tci/tpid
	tci     uint16 // valid iff vlan
	tpid    uint16 // valid iff vlan
}

// peek returns the next frame without consuming it, skipping our own and
// other outgoing frames. ok is false when no retired block is waiting.
func (r *rxRing) peek() (f rxFrame, ok bool) {
	for {
		if !r.open {
			h := r.blockHdr(r.block)
			if atomic.LoadUint32(&h.Block_status)&unix.TP_STATUS_USER == 0 {
				return f, false
			}
			r.open, r.left = true, h.Num_pkts
			r.off = r.block*r.blockSize + int(h.Offset_to_first_pkt)
			if r.left == 0 { // never seen, but an empty block must still go back
				r.releaseBlock()
				continue
			}
		}
		h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&r.ring[r.off]))
		// Belt and braces for kernels without PACKET_IGNORE_OUTGOING.
		if r.ring[r.off+pkttypeOff] == unix.PACKET_OUTGOING {
			r.advance()
			continue
		}
		f = rxFrame{off: r.off + int(h.Mac), snaplen: int(h.Snaplen), wirelen: int(h.Len)}
		if h.Status&unix.TP_STATUS_VLAN_VALID != 0 {
			f.vlan, f.tci, f.tpid = true, uint16(h.Hv1.Vlan_tci), packet.EtherTypeVLAN
			if h.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
				f.tpid = h.Hv1.Vlan_tpid
			}
		}
		return f, true
	}
}

// advance consumes the frame returned by peek and returns the block to the
// kernel after its last frame. Frames of a released block must not be read.
func (r *rxRing) advance() {
	r.left--
	if r.left == 0 {
		r.releaseBlock()
		return
	}
	h := (*unix.Tpacket3Hdr)(unsafe.Pointer(&r.ring[r.off]))
	r.off += int(h.Next_offset)
}

func (r *rxRing) releaseBlock() {
	atomic.StoreUint32(&r.blockHdr(r.block).Block_status, unix.TP_STATUS_KERNEL)
	r.open, r.left = false, 0
	r.block++
	if r.block == r.numBlocks {
		r.block = 0
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

// inPlace returns f as a slice of the ring, re-inserting a stripped VLAN tag
// by moving the MAC addresses 4 bytes down into the gap the kernel leaves
// between tpacket3_hdr and tp_mac. That gap holds sockaddr_ll, which peek has
// finished with, plus padding: tp_net is 16-aligned after at least 16 bytes
// of link header, so for Ethernet tp_mac - 4 never reaches the header. ok is
// false if it would (a non-Ethernet link type).
func (r *rxRing) inPlace(f rxFrame) ([]byte, bool) {
	if !f.vlan {
		return r.ring[f.off : f.off+f.snaplen], true
	}
	s := f.off - vlanTagLen
	if f.snaplen < ethAddrsLen || s < r.off+tp3HdrLen {
		return nil, false
	}
	copy(r.ring[s:s+ethAddrsLen], r.ring[f.off:f.off+ethAddrsLen])
	binary.BigEndian.PutUint16(r.ring[s+ethAddrsLen:], f.tpid)
	binary.BigEndian.PutUint16(r.ring[s+ethAddrsLen+2:], f.tci)
	return r.ring[s : f.off+f.snaplen], true
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
// ReadBatch does not allocate.
func (p *Port) ReadBatch(bufs [][]byte, sizes []int) (int, error) {
	if len(sizes) < len(bufs) {
		bufs = bufs[:len(sizes)]
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
		for n < len(bufs) {
			f, ok := p.rx.peek()
			if !ok {
				break
			}
			if f.snaplen < f.wirelen {
				p.cnt.rxTruncated.Add(1)
			} else if m, fits := p.rx.copyTo(bufs[n], f); fits {
				sizes[n] = m
				n++
			} else {
				p.cnt.rxTruncated.Add(1)
			}
			p.rx.advance()
		}
		if n > 0 {
			p.cnt.rxPackets.Add(uint64(n))
			return n, nil
		}
		if err := p.sleepRX(deadline); err != nil {
			return 0, err
		}
	}
}

// Recv waits for frames like ReadBatch, then calls fn once per frame ready in
// the ring, without copying: frame points into the ring and is valid only
// until fn returns (copy it to keep it). fn may modify the frame in place. As
// with ReadBatch, stripped VLAN tags are re-inserted and truncated frames are
// dropped. Recv hands over at most one ring's worth of blocks per call, so a
// busy port cannot starve the caller, and returns the number of frames
// passed to fn. fn must not call Close, ReadBatch or Recv on the same port.
func (p *Port) Recv(fn func(frame []byte)) (int, error) {
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	deadline := p.deadline()
	for {
		if p.closed.Load() {
			return 0, ErrClosed
		}
		n := 0
		startBlock, wrapped := p.rx.block, false
		for !wrapped {
			f, ok := p.rx.peek()
			if !ok {
				break
			}
			if frame, fits := p.rx.inPlace(f); fits && f.snaplen >= f.wirelen {
				fn(frame)
				n++
			} else {
				p.cnt.rxTruncated.Add(1)
			}
			p.rx.advance()
			wrapped = !p.rx.open && p.rx.block == startBlock
		}
		if n > 0 {
			p.cnt.rxPackets.Add(uint64(n))
			return n, nil
		}
		if err := p.sleepRX(deadline); err != nil {
			return 0, err
		}
	}
}

func (p *Port) deadline() time.Time {
	if p.pollTO <= 0 {
		return time.Time{}
	}
	return time.Now().Add(p.pollTO)
}

// sleepRX waits until the kernel retires a block. Before sleeping it folds
// the kernel's drop counters into Stats: the ring just ran dry, so this is
// cheap relative to the wait and keeps RxDrops fresh without a timer.
func (p *Port) sleepRX(deadline time.Time) error {
	p.syncKernelStats()
	return p.wait(&p.rxPfd, &p.rxTS, deadline)
}
