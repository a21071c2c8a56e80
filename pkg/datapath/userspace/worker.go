//go:build linux

package userspace

import (
	"errors"
	"fmt"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/afpacket"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

const (
	// batchSize is how many frames a reader takes per ReadBatch: the
	// batch size of sendmmsg in afpacket, so a batch of hits that all go
	// to one port leaves in one system call.
	batchSize = 64
	// headroom is the space kept in front of every received frame for
	// pushed VLAN tags (tunnel headers go in their own iovec).
	headroom = 64
	// maxQueued bounds the outputs queued before a flush; a flood to many
	// ports flushes early rather than overflow.
	maxQueued = 2 * batchSize
	// minSlotSize is the smallest buffer slot: a 1500-byte MTU frame with
	// two VLAN tags, plus headroom.
	minSlotSize = 2048
)

// slotSizeFor returns the buffer slot size for an interface MTU: the IP
// MTU, an Ethernet header, two VLAN tags and the headroom, rounded up to a
// cache line.
func slotSizeFor(mtu int) int {
	n := headroom + mtu + ethHdrLen + 2*vlanTagLen
	n = (n + 63) &^ 63
	return max(n, minSlotSize)
}

// worker is the per-goroutine state of the packet path: receive slots, copy
// slots, the output queues and the decoded packet. Each port reader and
// tunnel receiver owns one; Execute borrows one from a pool. Nothing in it
// is shared, so the hit path takes no lock but its port's flow-map read
// lock.
type worker struct {
	dp    *Datapath
	in    *port         // the port this worker reads, nil for Execute and tunnels
	drops *dropCounters // in.drops, or the datapath's

	slotSize int
	slots    [][]byte // receive slots (len slotSize); frames start at headroom
	bufs     [][]byte // slots[i][headroom:], what Receive fills
	sizes    []int
	hdrs     []offload.Hdr // the received frames' offload state
	jumbo    []byte        // receive slot for a GSO super-frame, with headroom; nil for Execute and tunnels
	rx       afpacket.Batch
	copies   [][]byte // slots for frames an output must snapshot, grown on demand
	nCopies  int
	segs     [][]byte // slots for segments of super-frames, with headroom, grown on demand
	nSegs    int
	seg      offload.Segmenter

	dec       packet.Decoder
	pkt       packet.Parsed
	rw        packet.Parsed // the frame as NAT actions rewrite it (actions.go)
	partialL4 bool          // the frame being applied has a partial TCP/UDP checksum
	up        datapath.Upcall

	hits, misses uint64 // of the batch being processed

	// Local outputs in arrival order; flushLocal groups them by port.
	nLocal    int
	localPort [maxQueued]*port
	localData [maxQueued][]byte
	localHdr  [maxQueued]offload.Hdr
	group     [maxQueued][]byte
	groupHdr  [maxQueued]offload.Hdr
	grouped   [maxQueued]bool

	vx, gre tunnelQueue

	execActs []action // Execute's compiled actions, reused
}

// maxFrame is the longest frame a port hands over: a 64 KiB GSO
// super-frame (IP length 65535) with its Ethernet header and two tags.
const maxFrame = 65535 + ethHdrLen + 2*vlanTagLen

func newWorker(dp *Datapath, in *port, nSlots, slotSize int) *worker {
	w := &worker{dp: dp, in: in, drops: &dp.drops, slotSize: slotSize}
	if in != nil {
		w.drops = &in.drops
		w.jumbo = make([]byte, headroom+maxFrame)
	}
	// A VM port's traffic is opaque to us: a VM may well send UDP to 4789
	// that is not VXLAN, so frames from ports are not decoded as tunnels.
	w.dec = packet.Decoder{VXLANPort: 0}
	w.slots = makeSlots(nSlots, slotSize)
	w.bufs = make([][]byte, nSlots)
	w.sizes = make([]int, nSlots)
	w.hdrs = make([]offload.Hdr, nSlots)
	for i := range w.slots {
		w.bufs[i] = w.slots[i][headroom:]
	}
	w.rx = afpacket.Batch{Bufs: w.bufs, Sizes: w.sizes, Hdrs: w.hdrs, JumboIndex: -1}
	if w.jumbo != nil {
		w.rx.Jumbo = w.jumbo[headroom:]
	}
	w.vx.init()
	w.gre.init()
	return w
}

// makeSlots carves n slots out of one allocation.
func makeSlots(n, size int) [][]byte {
	mem := make([]byte, n*size)
	s := make([][]byte, n)
	for i := range s {
		s[i] = mem[i*size : (i+1)*size : (i+1)*size]
	}
	return s
}

// snapshot copies frame into a copy slot, flushing first if all are in
// use. Copy slots are allocated on first need and kept: most flows have one
// output and never need one, and an Execute worker should not carry a
// reader's worth of them.
func (w *worker) snapshot(frame []byte) []byte {
	if w.nCopies == len(w.copies) {
		if len(w.copies) == maxQueued {
			w.flush()
		} else {
			w.copies = append(w.copies, make([]byte, w.slotSize))
		}
	}
	c := w.copies[w.nCopies]
	if len(frame) > len(c) {
		c = make([]byte, len(frame)) // only Execute of an oversized frame
	} else {
		w.nCopies++
	}
	return c[:copy(c, frame)]
}

// queueLocal queues frame for port p with its offload state h (zero for
// a complete frame), unless p's ingress rate limit polices it.
func (w *worker) queueLocal(p *port, frame []byte, h offload.Hdr) {
	if pol := p.ingressPol.Load(); pol != nil && !pol.Allow(w.dp.now(), len(frame)) {
		w.drops.add(rQoS, 1)
		return
	}
	if w.nLocal == maxQueued {
		w.flush()
	}
	w.localPort[w.nLocal], w.localData[w.nLocal], w.localHdr[w.nLocal] = p, frame, h
	w.nLocal++
}

// segSlot returns a slot for a segment (written at headroom), flushing
// first if all are in use; like copy slots, they are allocated on first
// need and kept.
func (w *worker) segSlot() []byte {
	if w.nSegs == len(w.segs) {
		if len(w.segs) == maxQueued {
			w.flush()
		} else {
			w.segs = append(w.segs, make([]byte, max(w.slotSize, minSlotSize)))
		}
	}
	w.nSegs++
	return w.segs[w.nSegs-1]
}

func (w *worker) queueTunnel(a *action, frame []byte) {
	q := &w.vx
	if a.Tunnel == packet.TunnelGRE {
		q = &w.gre
	}
	if q.n == maxQueued {
		w.flush()
	}
	q.add(a, frame)
}

// flush sends everything queued: local outputs grouped into one WriteBatch
// per port (in arrival order within a port), tunnel packets in one
// sendmmsg per socket. It returns the first error that stopped a port or
// socket from sending at all, for Execute to report.
func (w *worker) flush() error {
	var first error
	if w.nLocal > 0 {
		first = w.flushLocal()
	}
	if w.vx.n > 0 || w.gre.n > 0 {
		ts := w.dp.tun.Load()
		if err := w.vx.flush(w, ts.vxlan, &w.dp.vxlan); err != nil && first == nil {
			first = err
		}
		if err := w.gre.flush(w, ts.gre, &w.dp.gre); err != nil && first == nil {
			first = err
		}
	}
	w.nCopies, w.nSegs = 0, 0
	return first
}

func (w *worker) flushLocal() error {
	var first error
	n := w.nLocal
	for i := 0; i < n; i++ {
		if w.grouped[i] {
			continue
		}
		p := w.localPort[i]
		k, bytes := 0, 0
		for j := i; j < n; j++ {
			if !w.grouped[j] && w.localPort[j] == p {
				w.grouped[j] = true
				w.group[k], w.groupHdr[k] = w.localData[j], w.localHdr[j]
				bytes += len(w.localData[j])
				k++
			}
		}
		sent, err := p.io.Write(w.group[:k], w.groupHdr[:k])
		p.txPackets.Add(uint64(sent))
		// WriteBatch says how many frames were refused, not which: when
		// some were, the byte count is prorated.
		p.txBytes.Add(uint64(bytes * sent / k))
		if err != nil {
			// Closed (detached) or the interface is gone: every frame not
			// sent is lost for that reason. Refusals of single frames are
			// counted by the port itself (TxErrors).
			w.drops.add(rPortGone, uint64(k-sent))
			if first == nil && p.gone.Load() {
				// Detached while the frames were on their way (Execute
				// compiled its actions before the removal): the port is
				// unknown now, as it would be a moment later.
				first = fmt.Errorf("send on port %s (%s): %w (%w)", p.cfg.PortID, p.cfg.Interface, datapath.ErrUnknownPort, err)
			} else if first == nil {
				first = fmt.Errorf("send on port %s (%s): %w", p.cfg.PortID, p.cfg.Interface, err)
			}
		}
	}
	clear(w.grouped[:n])
	clear(w.localData[:n])
	clear(w.group[:n])
	w.nLocal = 0
	return first
}

// processBatch handles n received frames of w.in: parse, look up, apply or
// upcall, then flush the outputs. now is the datapath clock for the batch.
// This is the hit path; it allocates nothing (TestHitPathAllocs).
func (w *worker) processBatch(n int, now int64, h datapath.MissHandler) {
	in := w.in
	var rxBytes uint64
	w.hits, w.misses = 0, 0
	for i := 0; i < n; i++ {
		size := w.sizes[i]
		rxBytes += uint64(size)
		slot := w.slots[i]
		if i == w.rx.JumboIndex {
			slot = w.jumbo
		}
		// The port's egress rate limit polices what it sends as sent: a
		// super-frame takes its bytes at once.
		if pol := in.egressPol.Load(); pol != nil && !pol.Allow(now, size) {
			w.drops.add(rQoS, 1)
			continue
		}
		w.frame(slot, headroom, headroom+size, &w.hdrs[i], now, h)
	}
	w.flush()
	in.rxPackets.Add(uint64(n))
	in.rxBytes.Add(rxBytes)
	in.hits.Add(w.hits)
	in.misses.Add(w.misses)
}

// frame handles one frame of w.in, buf[start:end] with offload state oh:
// check, look up, apply or upcall.
func (w *worker) frame(buf []byte, start, end int, oh *offload.Hdr, now int64, h datapath.MissHandler) {
	in := w.in
	frame := buf[start:end]
	w.dec.Decode(&w.pkt, frame)
	if w.pkt.Drop != packet.DropNone {
		w.drops.addMalformed(w.pkt.Drop)
		return
	}
	if !oh.IsZero() {
		if e := offload.Check(oh, &w.pkt); e != offload.OK {
			w.drops.addOffload(e)
			return
		}
		w.pkt.L4CsumPartial = offload.IsL4Csum(oh, &w.pkt)
	}
	if offload.OverPortMTU(oh, &w.pkt, in.cfg.MTU) {
		w.drops.add(rOverMTU, 1)
		return
	}
	key := flow.KeyOf(&w.pkt, uint32(in.cfg.Index))
	in.flowMu.RLock()
	f := in.flows[key]
	in.flowMu.RUnlock()
	if f != nil && (f.mtu == 0 || !overMTU(oh, &w.pkt, f.mtu)) && !(f.stateful && closing(&w.pkt)) {
		w.hits++
		f.packets.Add(1)
		f.bytes.Add(uint64(end - start))
		if f.lastUsed.Load() != now {
			f.lastUsed.Store(now)
		}
		if !w.applyReceived(buf, start, end, f, oh) && len(f.acts) == 0 {
			w.drops.add(rFlow, 1)
		}
		return
	}
	if oh.IsGSO() {
		// The simulation sees packets as the wire will carry them, and a
		// flow's MTU applies to segments, so a super-frame that misses is
		// cut into its segments and each looked up on its own, as OVS's
		// kernel datapath segments before an upcall.
		w.missSegments(oh, now, h)
		return
	}
	if oh.NeedsCsum() {
		// The handler may forward the frame anywhere, and Execute takes
		// complete frames.
		offload.CompleteFrame(oh, &w.pkt)
	}
	w.misses++
	// Send what earlier packets queued first: the handler's Execute
	// sends at once, and must not overtake them.
	w.flush()
	w.up = datapath.Upcall{InPort: in.cfg.Index, PortID: in.cfg.PortID, Frame: frame, Pkt: &w.pkt, Key: key}
	h.Miss(&w.up)
	w.up = datapath.Upcall{}
}

// missSegments cuts the super-frame in w.pkt into segments and handles
// each as a frame of its own.
func (w *worker) missSegments(oh *offload.Hdr, now int64, h datapath.MissHandler) {
	var none offload.Hdr
	w.seg.Init(&w.pkt, oh, 0)
	for !w.seg.Done() {
		slot := w.segSlot()
		n := w.seg.Next(slot[headroom:])
		w.frame(slot, headroom, headroom+n, &none, now, h)
	}
}

// closing reports a TCP segment that ends its connection (FIN or RST). On
// a flow that carries flow state it goes to the slow path although the flow
// matches: the connection's entries must see it to move to their short
// closing timeouts, or they would live for the established timeout (a day)
// and hold their NAT port and zone room long after the connection ended.
// Two or three segments per connection pay for it.
func closing(p *packet.Parsed) bool {
	return p.L4 == packet.L4TCP && p.TCPFlags&(packet.TCPFin|packet.TCPRst) != 0
}

// overMTU reports an IP datagram longer than the flow's MTU, which must go
// to the slow path (for a frag-needed answer) rather than be forwarded. For
// a GSO super-frame the datagrams are its segments: the super-frame is
// never on a wire.
func overMTU(oh *offload.Hdr, p *packet.Parsed, mtu int) bool {
	if p.L3 != packet.L3IPv4 && p.L3 != packet.L3IPv6 {
		return false
	}
	return offload.SegmentIPLen(oh, p) > mtu
}

// readLoop is a port's receiver: batch after batch until the port closes.
func (dp *Datapath) readLoop(p *port) {
	defer dp.wg.Done()
	defer close(p.done)
	w := newWorker(dp, p, batchSize, p.slotSize)
	h := dp.handler
	failing := false
	for {
		n, err := p.io.Receive(&w.rx)
		if err != nil {
			if errors.Is(err, afpacket.ErrClosed) || p.gone.Load() {
				return
			}
			// The interface went down or away (ENETDOWN): the socket
			// resumes by itself when it comes back, so wait and retry
			// rather than give the port up. Logged once per outage.
			if !failing {
				dp.log.Warn("datapath: cannot receive on port, retrying every 100ms", "port", p.cfg.PortID, "interface", p.cfg.Interface, "err", err)
				failing = true
			}
			select {
			case <-dp.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		if failing {
			dp.log.Info("datapath: receiving on port again", "port", p.cfg.PortID, "interface", p.cfg.Interface)
			failing = false
		}
		w.processBatch(n, dp.now(), h)
	}
}

// Execute implements datapath.Datapath.
func (dp *Datapath) Execute(inPort int32, frame []byte, actions []flow.Action) error {
	if len(frame) < ethHdrLen {
		return fmt.Errorf("datapath: execute: frame of %d bytes is shorter than an Ethernet header", len(frame))
	}
	if dp.isClosed() {
		return datapath.ErrClosed
	}
	w := dp.execPool.Get().(*worker)
	defer dp.execPool.Put(w)
	acts, err := compile(dp.ports.Load(), actions, w.execActs)
	if err != nil {
		return fmt.Errorf("datapath: execute: %w", err)
	}
	w.execActs = acts
	slot := w.slots[0]
	if headroom+len(frame) > len(slot) {
		slot = make([]byte, headroom+len(frame)) // a generated jumbo frame: rare
	}
	copy(slot[headroom:], frame)
	w.apply(slot, headroom, headroom+len(frame), acts, nil)
	err = w.flush()
	clear(w.execActs) // drop references to ports for the pool's sake
	if err != nil {
		return fmt.Errorf("datapath: execute: %w", err)
	}
	return nil
}

func (dp *Datapath) isClosed() bool {
	select {
	case <-dp.stop:
		return true
	default:
		return false
	}
}
