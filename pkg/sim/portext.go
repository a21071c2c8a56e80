package sim

import (
	"fmt"
	"net/netip"

	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// What a port carries besides forwarding: trunk subports (a VLAN-aware
// VM's), mirrors of its traffic, and the DSCP marking of its QoS policy.
//
// A subport (model.Port.ParentID, ParentVLAN) has no interface of its
// own: frames tagged ParentVLAN on its parent's interface enter by it,
// untagged, and what leaves by it goes out of the parent's interface
// tagged ParentVLAN. The walk handles it by giving the subport its
// parent's binding and tagging on output; actions name the parent, the
// port the datapath knows.

// subport is a parent port's subport with its VLAN.
type subport struct {
	vlan uint16
	port int32
}

// mirror is a model.Mirror indexed for the walk.
type mirror struct {
	tag    uint64
	dir    uint8 // mirrorIn | mirrorOut
	dest   int32 // the port copies leave by; none for a remote endpoint
	remote netip.Addr
	tunnel packet.Tunnel // packet.TunnelGRE or packet.TunnelERSPAN
	key    uint32
	vlans  [][2]uint16
}

const (
	mirrorIn  = 1 // what the port delivers to its interface
	mirrorOut = 2 // what enters by its interface
)

// buildPortExtras resolves subports, mirrors and QoS marking after the
// ports are indexed.
func (t *Topology) buildPortExtras(ports []*model.Port, mirrors []*model.Mirror, qos map[string]*model.QoSPolicy) error {
	for i, mp := range ports {
		if mp.QoSPolicyID == "" && mp.ParentID == "" {
			continue
		}
		p := t.ports.Mut(int32(i), t.gen)
		if mp.QoSPolicyID != "" {
			p.qosTag = ObjectTag(model.QoSPolicyKind, mp.QoSPolicyID)
			if q := qos[mp.QoSPolicyID]; q != nil && q.MarkDSCP {
				p.markDSCP, p.dscp = true, q.DSCPMark
			}
		}
		if mp.ParentID == "" {
			continue
		}
		pi, ok := t.portByID.Get(mp.ParentID)
		if !ok {
			return fmt.Errorf("port %s: parent port %s does not exist", mp.ID, mp.ParentID)
		}
		parent := t.ports.Mut(pi, t.gen)
		parent.subs = append(parent.subs, subport{vlan: mp.ParentVLAN, port: int32(i)})
		p.parent, p.parentVLAN = pi, mp.ParentVLAN
		// The subport is where its parent is bound.
		p.hostID, p.host, p.ifName, p.tunnelKey = parent.hostID, parent.host, parent.ifName, parent.tunnelKey
	}
	for _, m := range mirrors {
		pi, ok := t.portByID.Get(m.PortID)
		if !ok {
			return fmt.Errorf("mirror %s: port %s does not exist", m.ID, m.PortID)
		}
		x := mirror{tag: ObjectTag(model.MirrorKind, m.ID), dest: none, remote: m.RemoteIP, key: m.Key, tunnel: packet.TunnelGRE}
		switch m.Direction {
		case "in":
			x.dir = mirrorIn
		case "out":
			x.dir = mirrorOut
		default:
			x.dir = mirrorIn | mirrorOut
		}
		if m.Encap == "erspan" {
			x.tunnel = packet.TunnelERSPAN
		}
		if m.DestPortID != "" {
			d, ok := t.portByID.Get(m.DestPortID)
			if !ok {
				return fmt.Errorf("mirror %s: destination port %s does not exist", m.ID, m.DestPortID)
			}
			x.dest = d
		}
		var err error
		if x.vlans, err = model.ParseVLANSet(m.VLANs); err != nil {
			return fmt.Errorf("mirror %s: %w", m.ID, err)
		}
		p := t.ports.Mut(pi, t.gen)
		p.mirrors = append(p.mirrors, int32(len(t.mirrors)))
		t.mirrors = append(t.mirrors, x)
	}
	return nil
}

// carrier is the port whose interface carries port q's frames: its
// parent for a subport, itself otherwise.
func (t *Topology) carrier(q int32) int32 {
	if p := t.ports.At(q).parent; p != none {
		return p
	}
	return q
}

// ingress starts a walk at exterior port pi: a tagged frame on a trunk's
// parent enters by the subport of its VLAN (untagged from then on), the
// port's out-mirrors copy the frame as it came in, and its QoS policy
// marks it. It returns the port the walk enters by, none to drop.
func (w *walk) ingress(pi int32) int32 {
	t := w.t
	p := t.ports.At(pi)
	in := pi
	if len(p.subs) > 0 {
		w.res.addTag(p.tag)
		if w.cur.tagged {
			in = none
			for _, s := range p.subs {
				if s.vlan == w.cur.vlan {
					in = s.port
				}
			}
			if in == none {
				w.drop(DropVLANMismatch, t.portName(pi), fmt.Sprintf("no subport of the trunk carries vlan %d", w.cur.vlan))
				return none
			}
		}
	}
	w.mirrorCopies(in, mirrorOut)
	if in != pi {
		// The subport's frames are untagged past the parent's interface.
		w.cur.tagged, w.cur.vlan = w.pkt.VLANs > 1, 0
		if w.pkt.VLANs > 1 {
			w.cur.vlan = w.pkt.VLAN[1].VID
		}
	}
	q := t.ports.At(in)
	if q.qosTag != 0 {
		w.res.addTag(q.qosTag)
	}
	if q.markDSCP && (w.pkt.L3 == packet.L3IPv4 || w.pkt.L3 == packet.L3IPv6) && w.pkt.TOS>>2 != q.dscp {
		w.addAction(flow.Action{Type: flow.ActSetDSCP, DSCP: q.dscp})
	}
	return in
}

// mirrorCopies sends the copies port pi's mirrors of direction dir make
// of the frame as the emitted actions leave it.
func (w *walk) mirrorCopies(pi int32, dir uint8) {
	t := w.t
	for _, mi := range t.ports.At(pi).mirrors {
		m := &t.mirrors[mi]
		w.res.addTag(m.tag)
		if m.dir&dir == 0 || !m.carries(w.emitted) {
			continue
		}
		if m.dest == none {
			w.addAction(flow.Action{Type: flow.ActMirror, Tunnel: m.tunnel, Underlay: m.remote, TunnelKey: m.key})
			continue
		}
		w.copyTo(m.dest)
	}
}

// carries reports whether a mirror with a VLAN filter copies a frame of
// header h: only tagged frames of its VLANs.
func (m *mirror) carries(h l2State) bool {
	if len(m.vlans) == 0 {
		return true
	}
	if !h.tagged {
		return false
	}
	for _, r := range m.vlans {
		if h.vlan >= r[0] && h.vlan <= r[1] {
			return true
		}
	}
	return false
}

// copyTo sends the frame, as the emitted actions leave it, out of port q
// (a tap service's): no filters, no MTU check, not an output of the walk.
func (w *walk) copyTo(q int32) {
	p := w.t.ports.At(q)
	w.res.addTag(p.tag)
	if !p.up || !p.exterior() {
		return
	}
	if a, ok := w.deliver(q); ok {
		w.addAction(a)
	}
}

// deliver is the action that sends the frame out of exterior port q: out
// of its interface (its parent's, for a subport) on this host, or to its
// host with its tunnel key. It reports false when q's host shares no
// tunnel zone with this one.
func (w *walk) deliver(q int32) (flow.Action, bool) {
	t, s := w.t, w.s
	p := t.ports.At(q)
	c := t.carrier(q)
	a := flow.Action{Port: c, PortID: t.ports.At(c).id}
	if p.hostID == s.cfg.HostID {
		a.Type, a.Interface = flow.ActOutput, p.ifName
		return a, true
	}
	if p.host == none || !s.remote[p.host].ok {
		if p.host != none {
			w.res.addTag(t.hosts[p.host].tag) // re-simulated when the host joins a zone or comes alive
		}
		return a, false
	}
	rh := &s.remote[p.host]
	w.res.addTag(rh.tag)
	w.res.addTag(rh.zoneTag)
	a.Type, a.HostID, a.Underlay, a.Tunnel, a.TunnelKey = flow.ActEncap, p.hostID, rh.addr, rh.tunnel, p.tunnelKey
	return a, true
}
