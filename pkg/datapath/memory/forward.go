package memory

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// decoder decodes frames: VXLAN decoding off, since a VM's UDP to 4789 is
// the VM's business, and a flow's frame is always an overlay frame.
var decoder packet.Decoder

// resolve checks actions (flow.Action.Check) and returns, per action,
// the bound port it outputs to; an output to a port that is not bound is
// an error.
func resolve(ps *portSet, acts []flow.Action) ([]*port, error) {
	outs := make([]*port, len(acts))
	for i := range acts {
		a := &acts[i]
		if err := a.Check(); err != nil {
			return nil, fmt.Errorf("action %d: %w", i, err)
		}
		if a.Type == flow.ActOutput {
			if outs[i] = ps.index[a.Port]; outs[i] == nil {
				return nil, fmt.Errorf("action %d: output to port %d (%s): %w", i, a.Port, a.PortID, datapath.ErrUnknownPort)
			}
		}
	}
	return outs, nil
}

// worker is one goroutine's scratch: a port reader's, or Execute's.
type worker struct {
	dp  *Datapath
	pkt packet.Parsed // the frame as received (the key)
	rw  packet.Parsed // the frame as rewritten so far
	up  datapath.Upcall
	hdr [8]byte
	// txFailed: an output found its interface gone or full (Execute
	// reports it).
	txFailed bool
}

// readLoop is a port's receiver: frame after frame until the port is
// detached or the datapath stops.
func (dp *Datapath) readLoop(ctx context.Context, p *port) {
	defer dp.wg.Done()
	w := &worker{dp: dp}
	h := dp.handler
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.quit:
			return
		case <-p.iface.gone:
			// The interface went away (a VM's tap): the port stays bound,
			// receiving nothing, until the agent detaches it.
			select {
			case <-p.quit:
			case <-ctx.Done():
			}
			return
		case <-p.iface.toDP.ready:
			for range queueLen {
				f := p.iface.toDP.pop()
				if f == nil {
					break
				}
				w.receive(p, f, h)
				f.free()
			}
			p.iface.toDP.rearm()
		}
	}
}

// receive handles one frame of port p: the hit path, or an upcall.
func (w *worker) receive(p *port, f *frame, h datapath.MissHandler) {
	dp := w.dp
	b := f.bytes()
	p.rxPackets.Add(1)
	p.rxBytes.Add(uint64(len(b)))
	if dp.policed(p.qos.egressPol.Load(), len(b)) {
		return
	}
	decoder.Decode(&w.pkt, b)
	if w.pkt.Drop != packet.DropNone {
		dp.malformed[min(int(w.pkt.Drop), len(dp.malformed)-1)].Add(1)
		return
	}
	key := flow.KeyOf(&w.pkt, uint32(p.cfg.Index))
	fl := dp.table.lookup(&key)
	if fl != nil && (fl.mtu == 0 || !overMTU(&w.pkt, fl.mtu)) && !(len(fl.state) > 0 && closesTCP(&w.pkt)) {
		dp.hits.Add(1)
		fl.packets.Add(1)
		fl.bytes.Add(uint64(len(b)))
		fl.lastUsed.Store(dp.now())
		if !w.apply(f, fl.acts, fl.outs) && len(fl.acts) == 0 {
			dp.drop(datapath.DropFlow, 1)
		}
		return
	}
	dp.misses.Add(1)
	w.up = datapath.Upcall{InPort: p.cfg.Index, PortID: p.cfg.PortID, Frame: b, Pkt: &w.pkt, Key: key}
	h.Miss(&w.up)
	w.up = datapath.Upcall{}
}

// overMTU reports an IP datagram longer than the flow allows: it goes to
// the slow path for a frag-needed answer.
func overMTU(p *packet.Parsed, mtu int) bool {
	return (p.L3 == packet.L3IPv4 || p.L3 == packet.L3IPv6) && p.L3End-p.L3Off > mtu
}

// closesTCP reports a FIN or RST, which a flow carrying flow state sends
// to the slow path so that the connection's entries learn it ended.
func closesTCP(p *packet.Parsed) bool {
	return p.L4 == packet.L4TCP && p.TCPFlags&(packet.TCPFin|packet.TCPRst) != 0
}

// apply runs acts on f's frame in place, sending a copy at each output.
// It reports whether anything was sent; an action that cannot apply
// drops the frame and counts why.
func (w *worker) apply(f *frame, acts []flow.Action, outs []*port) bool {
	dp := w.dp
	sent, decoded := false, false
	for i := range acts {
		a := &acts[i]
		switch a.Type {
		case flow.ActSetEthSrc:
			copy(f.buf[f.start+6:f.start+12], a.MAC[:])
		case flow.ActSetEthDst:
			copy(f.buf[f.start:f.start+6], a.MAC[:])
		case flow.ActPushVLAN:
			if f.start < 4 {
				dp.drop(datapath.DropVLANHeadroom, 1)
				return false
			}
			copy(f.buf[f.start-4:], f.buf[f.start:f.start+12])
			f.start -= 4
			binary.BigEndian.PutUint16(f.buf[f.start+12:], packet.EtherTypeVLAN)
			binary.BigEndian.PutUint16(f.buf[f.start+14:], a.VLAN&0x0fff)
			decoded = false
		case flow.ActPopVLAN:
			b := f.bytes()
			if len(b) < 18 || (binary.BigEndian.Uint16(b[12:]) != packet.EtherTypeVLAN && binary.BigEndian.Uint16(b[12:]) != packet.EtherTypeQinQ) {
				dp.drop(datapath.DropPopUntagged, 1)
				return false
			}
			copy(f.buf[f.start+4:f.start+16], b[:12])
			f.start += 4
			decoded = false
		case flow.ActOutput, flow.ActEncap:
			sent = w.send(a, outs[i], f.bytes()) || sent
		case flow.ActMirror:
			dp.mirror(a, f.bytes())
		default: // TTL and NAT rewrites, on the decoded frame
			if !decoded {
				decoder.Decode(&w.rw, f.bytes())
				decoded = true
			}
			if err := a.Rewrite(&w.rw); err != nil {
				reason := datapath.DropRewriteRefused
				if errors.Is(err, flow.ErrTTLExpired) {
					reason = datapath.DropTTLExpired
				}
				dp.drop(reason, 1)
				return false
			}
		}
	}
	return sent
}

// send outputs a copy of b to a local port (out) or through a tunnel.
func (w *worker) send(a *flow.Action, out *port, b []byte) bool {
	if a.Type == flow.ActEncap {
		return w.dp.encap(a, b, w.hdr[:])
	}
	reason := w.dp.output(out, b)
	w.txFailed = w.txFailed || reason == datapath.DropTxError
	return reason == ""
}

// output sends a copy of b out of a local port; it returns why it could
// not (counted), or "".
func (dp *Datapath) output(out *port, b []byte) string {
	reason := ""
	switch {
	case dp.policed(out.qos.ingressPol.Load(), len(b)):
		return datapath.DropQoSPoliced
	case out.gone.Load():
		reason = datapath.DropPortGone
	case !out.iface.output(newFrame(b)):
		out.txDropped.Add(1)
		reason = datapath.DropTxError
	default:
		out.txPackets.Add(1)
		out.txBytes.Add(uint64(len(b)))
		return ""
	}
	dp.drop(reason, 1)
	return reason
}

// Execute implements datapath.Datapath.
func (dp *Datapath) Execute(inPort int32, frame []byte, actions []flow.Action) error {
	if len(frame) < 14 {
		return fmt.Errorf("datapath: execute: frame of %d bytes is shorter than an Ethernet header", len(frame))
	}
	if dp.closed.Load() {
		return datapath.ErrClosed
	}
	outs, err := resolve(dp.ports.Load(), actions)
	if err != nil {
		return fmt.Errorf("datapath: execute: %w", err)
	}
	w := &worker{dp: dp}
	f := newFrame(frame)
	defer f.free()
	w.apply(f, actions, outs)
	if w.txFailed {
		return fmt.Errorf("datapath: execute: an output's interface is gone or not reading")
	}
	return nil
}
