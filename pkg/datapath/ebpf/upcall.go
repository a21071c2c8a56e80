//go:build linux

package ebpf

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
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
}

var upcallItems = sync.Pool{New: func() any { return &upcallItem{frame: make([]byte, 0, 2048)} }}

const upcallHeaderSize = int(unsafe.Sizeof(upcallHeader{}))

// readUpcalls reads the per-CPU upcall rings until the reader is closed,
// handing misses to their port's goroutine and flow-state packets to the
// StateHandler. It never blocks on a handler: a port whose miss goroutine
// is behind loses its upcalls, not the other ports.
func (dp *Datapath) readUpcalls() {
	defer dp.wg.Done()
	var rec perf.Record
	for {
		if err := dp.reader.ReadInto(&rec); err != nil {
			if errors.Is(err, perf.ErrClosed) {
				return
			}
			dp.log.Warn("datapath: read upcalls", "err", err)
			continue
		}
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
		return // detached since
	}
	it := upcallItems.Get().(*upcallItem)
	it.reason, it.key, it.truncated = h.Reason, fromKernelKey(&h.Key), h.Len < h.DataLen
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
		upcallItems.Put(it)
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

// missLoop calls the MissHandler for p's upcalls, one at a time: a slow
// simulation delays only this port.
func (dp *Datapath) missLoop(p *port) {
	defer dp.wg.Done()
	defer close(p.done)
	var (
		dec packet.Decoder // VXLAN off: a VM's traffic is opaque to us
		pkt packet.Parsed
		up  datapath.Upcall
	)
	for {
		select {
		case <-dp.stop:
			return
		case it := <-p.upq:
			if !p.gone.Load() {
				dp.handleUpcall(p, it, &dec, &pkt, &up)
			}
			upcallItems.Put(it)
		}
	}
}

func (dp *Datapath) handleUpcall(p *port, it *upcallItem, dec *packet.Decoder, pkt *packet.Parsed, up *datapath.Upcall) {
	if it.truncated {
		// A GSO super-packet too long to copy: dropped; the sender's
		// retransmission is a single segment, which comes through.
		dp.drops.add(datapath.DropRxOversize, 1)
		return
	}
	dec.Decode(pkt, it.frame)
	if pkt.Drop != packet.DropNone {
		dp.drops.add(datapath.MalformedDrop(pkt.Drop), 1)
		return
	}
	completeChecksum(pkt, it.frame)
	key := flow.KeyOf(pkt, uint32(p.cfg.Index))
	if it.reason != upcallPunt && key != it.key {
		dp.drops.add(DropKeyMismatch, 1)
		dp.keyWarn.Do(func() {
			dp.log.Error("datapath: the kernel parser computed another flow key than flow.KeyOf; flows of this kind will never hit",
				"kernel", datapath.FormatKey(&it.key), "agent", datapath.FormatKey(&key))
		})
	}
	// A frame that missed while the agent was installing its flow (the
	// kernel does not wait for the miss handler as a socket reader does)
	// takes the flow now, as OVS's upcall handler does, rather than be
	// simulated twice. So does every packet of a slow flow.
	if it.reason == upcallSlow || it.reason == upcallMiss {
		dp.mu.Lock()
		r := dp.table.recs[key]
		dp.mu.Unlock()
		if r != nil && (r.slow || it.reason == upcallMiss) && !needsAgent(r, pkt) {
			if it.reason == upcallMiss {
				dp.lateHits.Add(1) // the kernel counted a miss and no hit
			}
			if len(r.acts) == 0 {
				dp.drops.add(datapath.DropFlow, 1)
				return
			}
			if err := dp.Execute(p.cfg.Index, it.frame, r.acts); err != nil && !dp.isClosed() {
				dp.log.Debug("datapath: execute a flow's actions", "err", err)
			}
			return
		}
	}
	*up = datapath.Upcall{InPort: p.cfg.Index, PortID: p.cfg.PortID, Frame: it.frame, Pkt: pkt, Key: key}
	dp.handler.Miss(up)
	*up = datapath.Upcall{}
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
