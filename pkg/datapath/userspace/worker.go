//go:build linux

package userspace

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/afpacket"
	"github.com/nagare/nagare/pkg/flow"
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
	bufs     [][]byte // slots[i][headroom:], what ReadBatch fills
	sizes    []int
	copies   [][]byte // slots for frames an output must snapshot, grown on demand
	nCopies  int

	dec packet.Decoder
	pkt packet.Parsed
	rw  packet.Parsed // the frame as NAT actions rewrite it (actions.go)
	up  datapath.Upcall

	// Local outputs in arrival order; flushLocal groups them by port.
	nLocal    int
	localPort [maxQueued]*port
	localData [maxQueued][]byte
	group     [maxQueued][]byte
	grouped   [maxQueued]bool

	vx, gre tunnelQueue

	execActs []action // Execute's compiled actions, reused
}

func newWorker(dp *Datapath, in *port, nSlots, slotSize int) *worker {
	w := &worker{dp: dp, in: in, drops: &dp.drops, slotSize: slotSize}
	if in != nil {
		w.drops = &in.drops
	}
	// A VM port's traffic is opaque to us: a VM may well send UDP to 4789
	// that is not VXLAN, so frames from ports are not decoded as tunnels.
	w.dec = packet.Decoder{VXLANPort: 0}
	w.slots = makeSlots(nSlots, slotSize)
	w.bufs = make([][]byte, nSlots)
	w.sizes = make([]int, nSlots)
	for i := range w.slots {
		w.bufs[i] = w.slots[i][headroom:]
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

func (w *worker) queueLocal(p *port, frame []byte) {
	if pol := p.ingressPol.Load(); pol != nil && !pol.Allow(w.dp.now(), len(frame)) {
		w.drops.add(rQoS, 1)
		return
	}
	if w.nLocal == maxQueued {
		w.flush()
	}
	w.localPort[w.nLocal], w.localData[w.nLocal] = p, frame
	w.nLocal++
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
	w.nCopies = 0
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
				w.group[k] = w.localData[j]
				bytes += len(w.localData[j])
				k++
			}
		}
		sent, err := p.io.WriteBatch(w.group[:k])
		p.txPackets.Add(uint64(sent))
		// WriteBatch says how many frames were refused, not which: when
		// some were, the byte count is prorated.
		p.txBytes.Add(uint64(bytes * sent / k))
		if err != nil {
			// Closed (detached) or the interface is gone: every frame not
			// sent is lost for that reason. Refusals of single frames are
			// counted by the port itself (TxErrors).
			w.drops.add(rPortGone, uint64(k-sent))
			if first == nil {
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
	var hits, misses, rxBytes uint64
	for i := 0; i < n; i++ {
		size := w.sizes[i]
		rxBytes += uint64(size)
		slot := w.slots[i]
		frame := slot[headroom : headroom+size]
		if pol := in.egressPol.Load(); pol != nil && !pol.Allow(now, size) {
			w.drops.add(rQoS, 1)
			continue
		}
		w.dec.Decode(&w.pkt, frame)
		if w.pkt.Drop != packet.DropNone {
			w.drops.addMalformed(w.pkt.Drop)
			continue
		}
		key := flow.KeyOf(&w.pkt, uint32(in.cfg.Index))
		in.flowMu.RLock()
		f := in.flows[key]
		in.flowMu.RUnlock()
		if f != nil && (f.mtu == 0 || !overMTU(&w.pkt, f.mtu)) && !(f.stateful && closing(&w.pkt)) {
			hits++
			f.packets.Add(1)
			f.bytes.Add(uint64(size))
			if f.lastUsed.Load() != now {
				f.lastUsed.Store(now)
			}
			if !w.apply(slot, headroom, headroom+size, f.acts) && len(f.acts) == 0 {
				w.drops.add(rFlow, 1)
			}
			continue
		}
		misses++
		// Send what earlier packets queued first: the handler's Execute
		// sends at once, and must not overtake them.
		w.flush()
		w.up = datapath.Upcall{InPort: in.cfg.Index, PortID: in.cfg.PortID, Frame: frame, Pkt: &w.pkt, Key: key}
		h.Miss(&w.up)
		w.up = datapath.Upcall{}
	}
	w.flush()
	in.rxPackets.Add(uint64(n))
	in.rxBytes.Add(rxBytes)
	in.hits.Add(hits)
	in.misses.Add(misses)
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
// to the slow path (for a frag-needed answer) rather than be forwarded.
func overMTU(p *packet.Parsed, mtu int) bool {
	if p.L3 != packet.L3IPv4 && p.L3 != packet.L3IPv6 {
		return false
	}
	return p.L3End-p.L3Off > mtu
}

// readLoop is a port's receiver: batch after batch until the port closes.
func (dp *Datapath) readLoop(p *port) {
	defer dp.wg.Done()
	defer close(p.done)
	w := newWorker(dp, p, batchSize, p.slotSize)
	h := dp.handler
	failing := false
	for {
		n, err := p.io.ReadBatch(w.bufs, w.sizes)
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
	w.apply(slot, headroom, headroom+len(frame), acts)
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
