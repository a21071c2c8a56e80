//go:build linux

package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"
	"unsafe"

	"github.com/cilium/ebpf/perf"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// upcallQueue is how many upcalls of one port wait for its miss
// goroutine; beyond that they are dropped and counted (rx-ring-full), as
// a full receive ring drops in the userspace datapath.
const upcallQueue = 256

// upcallItem is one upcall on its way to a port's miss goroutine.
type upcallItem struct {
	reason    uint32
	key       flow.Key // as the kernel computed it
	frame     []byte   // as received, the VLAN tag the kernel took out put back
	truncated bool     // a GSO super-packet longer than the upcall copies
	gsoSize   uint32   // a GSO super-packet's segment payload, 0 for a frame
	gsoType   uint8    // its GSO type as the kernel holds it (struct upcall)
}

var upcallItems = sync.Pool{New: func() any { return &upcallItem{frame: make([]byte, 0, 2048)} }}

// putItem returns it to the pool, without the buffer of a super-frame:
// the pool's items would otherwise keep 64 KiB each.
func putItem(it *upcallItem) {
	if cap(it.frame) > 16<<10 {
		it.frame = nil
	}
	upcallItems.Put(it)
}

const upcallHeaderSize = int(unsafe.Sizeof(upcallHeader{}))

// How the upcall reader waits (bpf/maps.h, upcall_mode). Asleep, it
// blocks on the rings that wake it at every record, so that a lone miss
// is handled at once; the first record wakes it up, and it tells the
// programs (upcall_mode 1) to write to the rings that wake it only every
// upcallBatchWakeup records. Awake, it reads everything there is, waits
// up to upcallLinger for more, and goes back to sleep (upcall_mode 0)
// after a linger with nothing to read. A flood of misses so costs a
// wakeup per batch, at the price of up to upcallLinger of delay for a
// miss that follows another within that time.
const (
	upcallBatchWakeup = 64
	// upcallLinger is 2 ms: the readers wait in whole milliseconds
	// (epoll), and 1 ms from now rounds down to no wait at all.
	upcallLinger = 2 * time.Millisecond
	// upcallSweep is how often a sleeping reader looks at the batch rings
	// anyway: a program that saw upcall_mode 1 just before the reader went
	// to sleep may write there after its last look.
	upcallSweep = 100 * time.Millisecond
)

// openReaders opens the readers of both sets of upcall rings.
func (dp *Datapath) openReaders() error {
	var err error
	if dp.reader, err = perf.NewReader(dp.objs.Upcalls, dp.opts.UpcallBuffer); err != nil {
		return err
	}
	dp.batchReader, err = perf.NewReaderWithOptions(dp.objs.UpcallsBatch, dp.opts.UpcallBuffer,
		perf.ReaderOptions{WakeupEvents: upcallBatchWakeup})
	if err != nil {
		dp.reader.Close()
		return err
	}
	return dp.setUpcallMode(0)
}

func (dp *Datapath) setUpcallMode(m uint32) error {
	if err := dp.objs.UpcallMode.Put(uint32(0), m); err != nil {
		return fmt.Errorf("set upcall mode: %w", err)
	}
	return nil
}

// readUpcalls reads the per-CPU upcall rings until the readers are
// closed, handing misses to their port's goroutine and flow-state packets
// to the StateHandler. It never blocks on a handler: a port whose miss
// goroutine is behind loses its upcalls, not the other ports.
func (dp *Datapath) readUpcalls() {
	defer dp.wg.Done()
	var rec perf.Record
	awake := false
	for {
		if !awake {
			// Asleep: the first record wakes us; the batch rings are
			// swept now and then for stragglers.
			dp.reader.SetDeadline(time.Now().Add(upcallSweep))
			n, ok := dp.drain(dp.reader, &rec)
			if !ok {
				return
			}
			if m, ok := dp.drainNow(dp.batchReader, &rec); !ok {
				return
			} else if n+m == 0 {
				continue
			}
			if err := dp.setUpcallMode(1); err != nil && !dp.isClosed() {
				dp.log.Warn("datapath: upcall reader", "err", err)
				continue
			}
			awake = true
			continue
		}
		// Awake: what the batch rings hold now and until the linger ends
		// (or a ring fills a batch), then what programs wrote to the
		// other rings before they saw the mode change.
		dp.batchReader.SetDeadline(time.Now().Add(upcallLinger))
		n, ok := dp.drain(dp.batchReader, &rec)
		if !ok {
			return
		}
		m, ok := dp.drainNow(dp.reader, &rec)
		if !ok {
			return
		}
		if n+m > 0 {
			continue
		}
		if err := dp.setUpcallMode(0); err != nil && !dp.isClosed() {
			dp.log.Warn("datapath: upcall reader", "err", err)
		}
		awake = false
		if _, ok := dp.drainNow(dp.batchReader, &rec); !ok {
			return
		}
	}
}

// drainNow reads what r holds now, without waiting.
func (dp *Datapath) drainNow(r *perf.Reader, rec *perf.Record) (int, bool) {
	r.SetDeadline(time.Now().Add(-time.Second))
	return dp.drain(r, rec)
}

// drain dispatches r's records until its deadline passes with its rings
// empty, and returns how many it read; false when r is closed.
func (dp *Datapath) drain(r *perf.Reader, rec *perf.Record) (int, bool) {
	n := 0
	for {
		err := r.ReadInto(rec)
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			return n, true
		case errors.Is(err, perf.ErrClosed):
			return n, false
		default:
			if dp.isClosed() {
				return n, false
			}
			dp.log.Warn("datapath: read upcalls", "err", err)
			return n, true
		}
		n++
		if rec.LostSamples > 0 {
			dp.perfLost.Add(rec.LostSamples)
			continue
		}
		dp.dispatch(rec.RawSample)
	}
}

func (dp *Datapath) dispatch(raw []byte) {
	if len(raw) < upcallHeaderSize {
		return
	}
	h := (*upcallHeader)(unsafe.Pointer(&raw[0]))
	data := raw[upcallHeaderSize:]
	if int(h.Len) > len(data) {
		return
	}
	data = data[:h.Len]
	switch h.Reason {
	case upcallState, upcallProbe:
		dp.deliverReserved(h, data)
		return
	}
	p := dp.ports.Load().bySlot[h.Slot]
	if p == nil || p.gone.Load() {
		// Detached since, or an adopted port not attached again yet.
		dp.drops.add(datapath.DropPortGone, 1)
		return
	}
	it := upcallItems.Get().(*upcallItem)
	it.reason, it.key, it.truncated = h.Reason, fromKernelKey(&h.Key), h.Len < h.DataLen
	it.gsoSize, it.gsoType = h.GsoSize, h.GsoType
	it.frame = it.frame[:0]
	if h.VlanPresent != 0 && len(data) >= 12 {
		it.frame = append(it.frame, data[:12]...)
		it.frame = binary.LittleEndian.AppendUint16(it.frame, h.VlanProto) // stored in network order
		it.frame = binary.BigEndian.AppendUint16(it.frame, h.VlanTci)
		it.frame = append(it.frame, data[12:]...)
	} else {
		it.frame = append(it.frame, data...)
	}
	select {
	case p.upq <- it:
	default:
		dp.drops.add(datapath.DropRxRingFull, 1)
		putItem(it)
	}
}

// deliverReserved hands a packet of a reserved tunnel key — flow state
// or a liveness probe — to its handler, on the reader goroutine (the
// handler must not block).
func (dp *Datapath) deliverReserved(h *upcallHeader, data []byte) {
	handled, vx, gre, drop := dp.state != nil, &dp.vxState, &dp.greState, datapath.DropTunnelStateUnhandled
	if h.Reason == upcallProbe {
		handled, vx, gre, drop = dp.probe != nil, &dp.vxProbe, &dp.greProbe, datapath.DropTunnelProbeUnhandled
	}
	from, payload, vxlan, ok := reservedPayload(h, data)
	if ok && h.Reason == upcallProbe && packet.AnswerEcho(payload) {
		// One the program could not answer (a GRE checksum): the
		// datapath answers echoes, not its ProbeHandler.
		if err := dp.sendReserved("echo reply", from, payload, packet.ProbeTunnelKey, &dp.vxEcho, &dp.greEcho); err != nil {
			dp.log.Debug("datapath: echo reply", "peer", from, "err", err)
		}
		return
	}
	if !ok || !handled {
		dp.drops.add(drop, 1)
		return
	}
	if vxlan {
		vx.rx.Add(1)
	} else {
		gre.rx.Add(1)
	}
	if h.Reason == upcallProbe {
		dp.probe.Probe(from, payload)
	} else {
		dp.state.State(from, payload)
	}
}

// reservedPayload is the sender and payload of a packet of a reserved
// tunnel key, and whether it came over VXLAN.
func reservedPayload(h *upcallHeader, data []byte) (from netip.Addr, payload []byte, vxlan, ok bool) {
	end := uint64(h.DataOff) + uint64(h.DataLen)
	if end > uint64(len(data)) || h.DataLen == 0 {
		return netip.Addr{}, nil, false, false
	}
	from = netip.AddrFrom4(*(*[4]byte)(unsafe.Pointer(&h.Peer)))
	// The program saw it on the underlay: UDP means VXLAN.
	vxlan = len(data) > 23 && data[23] == packet.IPProtoUDP
	return from, data[h.DataOff:end], vxlan, true
}

// startMissLoop starts p's miss goroutine; Datapath.mu is held.
func (dp *Datapath) startMissLoop(p *port) {
	if p.done != nil {
		return
	}
	p.done = make(chan struct{})
	dp.wg.Add(1)
	go dp.missLoop(p)
}

// missLoop calls the MissHandler for p's upcalls, one at a time, in
// batches of what is waiting: a slow simulation delays only this port.
func (dp *Datapath) missLoop(p *port) {
	defer dp.wg.Done()
	defer close(p.done)
	var m missState
	for {
		var it *upcallItem
		select {
		case <-dp.stop:
			return
		case it = <-p.upq:
		}
		// Whatever else is waiting goes in the same batch: one system
		// call per kind of kernel write for all of them (batch.go).
		dp.beginBatch(p)
		for n := 0; ; n++ {
			if !p.gone.Load() {
				dp.handleUpcall(p, it, &m)
			}
			putItem(it)
			if n+1 == missBatch {
				break
			}
			select {
			case it = <-p.upq:
				continue
			default:
			}
			break
		}
		dp.endBatch(p)
	}
}

func (dp *Datapath) handleUpcall(p *port, it *upcallItem, m *missState) {
	if it.truncated {
		// A GSO super-packet too long to copy: dropped; the sender's
		// retransmission is a single segment, which comes through.
		dp.drops.add(datapath.DropRxOversize, 1)
		return
	}
	pkt := &m.pkt
	m.dec.Decode(pkt, it.frame)
	if pkt.Drop != packet.DropNone {
		dp.drops.add(datapath.MalformedDrop(pkt.Drop), 1)
		return
	}
	if it.gsoSize != 0 {
		dp.handleSuperFrame(p, it, m)
		return
	}
	completeChecksum(pkt, it.frame)
	dp.handleFrame(p, it.reason, &it.key, it.frame, m)
}

// handleFrame hands a decoded frame (m.pkt) that is not a super-frame to
// the flow it missed or to the MissHandler. kkey is the key the kernel
// computed.
func (dp *Datapath) handleFrame(p *port, reason uint32, kkey *flow.Key, frame []byte, m *missState) {
	pkt := &m.pkt
	key := flow.KeyOf(pkt, uint32(p.cfg.Index))
	if reason != upcallPunt && key != *kkey {
		dp.drops.add(DropKeyMismatch, 1)
		dp.keyWarn.Do(func() {
			dp.log.Error("datapath: the kernel parser computed another flow key than flow.KeyOf; flows of this kind will never hit",
				"kernel", datapath.FormatKey(kkey), "agent", datapath.FormatKey(&key))
		})
	}
	// A frame that missed while the agent was installing its flow (the
	// kernel does not wait for the miss handler as a socket reader does)
	// takes the flow now, as OVS's upcall handler does, rather than be
	// simulated twice. So does every packet of a slow flow.
	if reason == upcallSlow || reason == upcallMiss {
		dp.mu.Lock()
		r := dp.table.recs[key]
		dp.mu.Unlock()
		if r != nil && (r.slow || reason == upcallMiss) && !needsAgent(r, pkt) {
			if reason == upcallMiss {
				dp.lateHits.Add(1) // the kernel counted a miss and no hit
			}
			if len(r.acts) == 0 {
				dp.drops.add(datapath.DropFlow, 1)
				return
			}
			if err := dp.Execute(p.cfg.Index, frame, r.acts); err != nil && !dp.isClosed() {
				dp.log.Debug("datapath: execute a flow's actions", "err", err)
			}
			return
		}
	}
	m.up = datapath.Upcall{InPort: p.cfg.Index, PortID: p.cfg.PortID, Frame: frame, Pkt: pkt, Key: key}
	dp.handler.Miss(&m.up)
	m.up = datapath.Upcall{}
}

// needsAgent reports a packet a flow must not forward although it
// matches: longer than the flow's MTU, or closing a tracked connection
// (the kernel program's checks).
func needsAgent(r *flowRec, p *packet.Parsed) bool {
	if r.mtu > 0 && (p.L3 == packet.L3IPv4 || p.L3 == packet.L3IPv6) && p.L3End-p.L3Off > r.mtu {
		return true
	}
	return r.state != nil && p.L4 == packet.L4TCP && p.TCPFlags&(packet.TCPFin|packet.TCPRst) != 0
}

// completeChecksum finishes the TCP or UDP checksum of a frame the VM's
// stack left to "hardware" (CHECKSUM_PARTIAL: the field holds only the
// pseudo header's sum, and the skb says where the rest goes). The kernel
// datapath forwards such skbs with their metadata, but an upcall copies
// only the bytes, and the agent's answer (Execute) goes out as a finished
// frame: without this, the first packet of every connection from a VM
// with tx checksum offload (the default) would arrive corrupt.
func completeChecksum(p *packet.Parsed, frame []byte) {
	var csumOff, n int
	switch p.L4 {
	case packet.L4TCP:
		csumOff, n = p.L4Off+16, p.L3End-p.L4Off
	case packet.L4UDP:
		csumOff, n = p.L4Off+6, int(binary.BigEndian.Uint16(frame[p.L4Off+4:]))
	default:
		return
	}
	if p.Frag != packet.FragNone || csumOff+2 > len(frame) || p.L4Off+n > len(frame) {
		return
	}
	l4 := frame[p.L4Off : p.L4Off+n]
	pseudo := packet.PseudoHeaderSum(p.SrcIP, p.DstIP, p.IPProto, n)
	field := binary.BigEndian.Uint16(frame[csumOff:])
	if p.L4 == packet.L4UDP && field == 0 || packet.Checksum(l4, pseudo) == 0 {
		return // none (IPv4 UDP) or complete
	}
	if field != ^packet.Checksum(nil, pseudo) {
		return // simply wrong: the receiver's business
	}
	binary.BigEndian.PutUint16(frame[csumOff:], 0)
	sum := packet.Checksum(l4, pseudo)
	if sum == 0 && p.L4 == packet.L4UDP {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(frame[csumOff:], sum)
}
