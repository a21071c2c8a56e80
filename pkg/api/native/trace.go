package native

import (
	"context"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// TraceRequest describes a packet to trace through the topology, as it
// would enter by InPortID. Unset Ethernet addresses get defaults: the source
// is a MAC learned on the in-port (or a fixed local one); the destination is
// the one the VM would put there (dstMAC): the gateway router port's MAC
// when Dst is off the in-port's subnet, else Dst's MAC as ARP would find it,
// and broadcast only when nothing knows it.
type TraceRequest struct {
	InPortID string     `json:"in_port_id"`
	HostID   string     `json:"host_id,omitempty"` // whose view; default the in-port's host
	EthSrc   packet.MAC `json:"eth_src,omitzero"`
	EthDst   packet.MAC `json:"eth_dst,omitzero"`
	VLAN     uint16     `json:"vlan,omitempty"`
	ARP      bool       `json:"arp,omitempty"`
	Src      netip.Addr `json:"src,omitzero"`
	Dst      netip.Addr `json:"dst,omitzero"`
	Proto    string     `json:"proto,omitempty"` // icmp, tcp, udp or a number
	SrcPort  uint16     `json:"src_port,omitempty"`
	DstPort  uint16     `json:"dst_port,omitempty"`
	TTL      uint8      `json:"ttl,omitempty"`
	Length   int        `json:"length,omitempty"`
	DF       bool       `json:"df,omitempty"`
}

// TraceStep is one line of a trace.
type TraceStep struct {
	Depth   int    `json:"depth"`
	Kind    string `json:"kind"`
	Object  string `json:"object"`
	Message string `json:"message"`
}

// TraceResponse is the simulation's account of the packet and its outcome.
type TraceResponse struct {
	Packet    string      `json:"packet"`
	Steps     []TraceStep `json:"steps"`
	Verdict   string      `json:"verdict"`
	Reason    string      `json:"reason,omitempty"`
	Actions   []string    `json:"actions"`
	Tags      int         `json:"tags"`
	Generated []string    `json:"generated,omitempty"`
}

// trace simulates a described packet on the current topology, with the MAC
// tables the agents have learned, and returns every step. Nothing is sent.
func (a *API) trace(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	var req TraceRequest
	if err := decodeStrict(body, &req); err != nil {
		writeError(w, err)
		return
	}
	objs, err := a.allObjects(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	macs, err := a.learnedMACs(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	neigh, err := a.learnedNeighbors(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	resp, err := runTrace(objs, macs, neigh, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) allObjects(ctx context.Context) ([]model.Object, error) {
	var all []model.Object
	for _, k := range nativeKinds() {
		objs, _, err := a.store.List(ctx, k, "", "")
		if err != nil {
			return nil, err
		}
		all = append(all, objs...)
	}
	return all, nil
}

func (a *API) learnedMACs(ctx context.Context) ([]nsdb.LearnedMAC, error) {
	if s, ok := a.store.(interface {
		LearnedMACs(context.Context) ([]nsdb.LearnedMAC, error)
	}); ok {
		return s.LearnedMACs(ctx)
	}
	return nil, nil
}

func (a *API) learnedNeighbors(ctx context.Context) ([]nsdb.LearnedNeighbor, error) {
	if s, ok := a.store.(interface {
		LearnedNeighbors(context.Context) ([]nsdb.LearnedNeighbor, error)
	}); ok {
		return s.LearnedNeighbors(ctx)
	}
	return nil, nil
}

// runTrace is the pure part of a trace: build the frame, walk it.
func runTrace(objs []model.Object, macs []nsdb.LearnedMAC, neigh []nsdb.LearnedNeighbor, req *TraceRequest) (*TraceResponse, error) {
	ports := map[string]*model.Port{}
	for _, o := range objs {
		if p, ok := o.(*model.Port); ok {
			ports[p.ID] = p
		}
	}
	in := ports[req.InPortID]
	if in == nil {
		return nil, badField("in_port_id", "port %q does not exist", req.InPortID)
	}
	probe := packet.Probe{EthSrc: req.EthSrc, EthDst: req.EthDst, VLAN: req.VLAN, ARP: req.ARP,
		Src: req.Src, Dst: req.Dst, SrcPort: req.SrcPort, DstPort: req.DstPort, TTL: req.TTL, DF: req.DF, Length: req.Length}
	switch strings.ToLower(req.Proto) {
	case "", "icmp", "icmp6", "icmpv6":
	case "tcp":
		probe.Proto = packet.IPProtoTCP
	case "udp":
		probe.Proto = packet.IPProtoUDP
	default:
		n, err := strconv.ParseUint(req.Proto, 10, 8)
		if err != nil {
			return nil, badField("proto", "%q is not icmp, tcp, udp or a protocol number", req.Proto)
		}
		probe.Proto = uint8(n)
	}
	if !req.Src.IsValid() || !req.Dst.IsValid() {
		return nil, badField("src", "give the packet's src and dst addresses")
	}
	if req.Src.Is4() != req.Dst.Is4() {
		return nil, badField("dst", "src and dst are of different families")
	}
	if probe.EthSrc.IsZero() {
		probe.EthSrc = in.MAC
		for _, m := range macs {
			if m.PortID == in.ID && probe.EthSrc.IsZero() {
				probe.EthSrc = m.MAC
			}
		}
		if probe.EthSrc.IsZero() {
			probe.EthSrc = packet.MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}
		}
	}
	topo, err := sim.Build(objs)
	if err != nil {
		return nil, err
	}
	host := req.HostID
	if host == "" {
		host = in.HostID
	}
	// A private, empty flow-state table: the trace shows what the first
	// packet of a new connection gets (NAT rules translate, connections are
	// new) instead of "no flow state configured"; replies find no state.
	fs := flowstate.New(flowstate.Config{MaxEntries: 64})
	s := sim.NewSimulator(topo, sim.Config{HostID: host, MACs: learned(macs), FlowState: fs})
	if probe.EthDst.IsZero() {
		probe.EthDst = dstMAC(objs, ports, neigh, in, req.Src, req.Dst)
		if probe.EthDst == packet.BroadcastMAC && !probe.ARP {
			// What the VM's ARP request would be answered with, where the
			// bridge answers it (a router's NAT address, a static entry).
			if mac, ok := arpAnswer(s, in.ID, probe.EthSrc, req.Src, req.Dst); ok {
				probe.EthDst = mac
			}
		}
	}
	buf := make([]byte, 16<<10)
	n, err := packet.BuildProbe(buf, &probe)
	if err != nil {
		return nil, badField("length", "cannot build the packet: %v", err)
	}
	var pkt packet.Parsed
	pkt.Decode(buf[:n])
	var tr sim.Tracer
	res := sim.NewResult()
	s.Simulate(&sim.Input{InPortID: in.ID, Pkt: &pkt, Frame: buf[:n], Trace: &tr}, res)
	out := &TraceResponse{Packet: pkt.String(), Verdict: res.Verdict.String(), Tags: len(res.Tags()), Actions: []string{}}
	if res.Verdict == sim.Drop {
		out.Reason = res.Reason.String()
	}
	for _, st := range tr.Steps {
		out.Steps = append(out.Steps, TraceStep{st.Depth, st.Kind.String(), st.Object, st.Message})
	}
	for _, act := range res.Actions() {
		out.Actions = append(out.Actions, formatAction(act))
	}
	for _, g := range res.Generated() {
		var gp packet.Parsed
		gp.Decode(res.Frame(g))
		out.Generated = append(out.Generated, g.Reason.String()+": "+gp.String())
	}
	return out, nil
}

// dstMAC is the Ethernet destination a VM on in's bridge would use for
// dst: off its subnet, the MAC of the router port that is its gateway;
// on it, dst's own MAC as ARP would find it — a router port's (it is the
// address itself), a DHCP host entry's, or one a router linked to the
// bridge learned. Broadcast only when none knows it (the VM would ARP).
func dstMAC(objs []model.Object, ports map[string]*model.Port, neigh []nsdb.LearnedNeighbor, in *model.Port, src, dst netip.Addr) packet.MAC {
	if in.BridgeID == "" {
		return packet.BroadcastMAC
	}
	var routers []string // routers linked to the bridge, whose ARP caches see it
	for _, p := range ports {
		if p.BridgeID != in.BridgeID || p.PeerID == "" {
			continue
		}
		rp := ports[p.PeerID]
		if rp == nil || rp.RouterID == "" {
			continue
		}
		if rp.Address == dst {
			return rp.MAC
		}
		if rp.Network.IsValid() && rp.Network.Contains(src) && !rp.Network.Contains(dst) {
			return rp.MAC
		}
		routers = append(routers, rp.RouterID)
	}
	subnets := map[string]bool{}
	for _, o := range objs {
		if s, ok := o.(*model.DHCPSubnet); ok && s.BridgeID == in.BridgeID && !s.Disabled {
			subnets[s.ID] = true
		}
	}
	for _, o := range objs {
		if h, ok := o.(*model.DHCPHost); ok && subnets[h.DHCPSubnetID] && h.Address == dst {
			return h.MAC
		}
	}
	for _, n := range neigh {
		if n.IP == dst && slices.Contains(routers, n.RouterID) {
			return n.MAC
		}
	}
	return packet.BroadcastMAC
}

// arpAnswer simulates the ARP request a VM on port in would send for dst
// and returns the MAC a reply generated on the way names, if any.
func arpAnswer(s *sim.Simulator, in string, src packet.MAC, srcIP, dst netip.Addr) (packet.MAC, bool) {
	if !srcIP.Is4() {
		return packet.MAC{}, false
	}
	buf := make([]byte, 128)
	n, err := packet.BuildProbe(buf, &packet.Probe{EthSrc: src, EthDst: packet.BroadcastMAC, ARP: true, Src: srcIP, Dst: dst})
	if err != nil {
		return packet.MAC{}, false
	}
	var pkt packet.Parsed
	pkt.Decode(buf[:n])
	res := sim.NewResult()
	s.Simulate(&sim.Input{InPortID: in, Pkt: &pkt, Frame: buf[:n]}, res)
	for _, g := range res.Generated() {
		var gp packet.Parsed
		if gp.Decode(res.Frame(g)); gp.L3 == packet.L3ARP && gp.ARPOp == 2 && gp.ARPSenderIP == dst {
			return gp.ARPSenderMAC, true
		}
	}
	return packet.MAC{}, false
}

func formatAction(a flow.Action) string {
	s := a.Type.String()
	switch a.Type {
	case flow.ActSetEthSrc, flow.ActSetEthDst:
		s += "(" + a.MAC.String() + ")"
	case flow.ActPushVLAN:
		s += "(" + strconv.Itoa(int(a.VLAN)) + ")"
	case flow.ActDecTTL:
		s += "(" + strconv.Itoa(int(a.Count)) + ")"
	case flow.ActOutput:
		s += "(port " + a.PortID + " interface " + a.Interface + ")"
	case flow.ActEncap:
		s += "(" + a.Tunnel.String() + " to " + a.Underlay.String() + " host " + a.HostID + " key " + strconv.Itoa(int(a.TunnelKey)) + ")"
	case flow.ActSetIPSrc, flow.ActSetIPDst:
		s += "(" + a.Addr.String() + ")"
	case flow.ActSetL4Src, flow.ActSetL4Dst, flow.ActSetICMPID:
		s += "(" + strconv.Itoa(int(a.L4Port)) + ")"
	case flow.ActInnerSrc, flow.ActInnerDst:
		s += "(" + netip.AddrPortFrom(a.Addr, a.L4Port).String() + ")"
	}
	return s
}

// learned is a read-only MAC table over the agents' learned entries.
type learnedTable map[nsdb.MACEntry]string

func learned(macs []nsdb.LearnedMAC) learnedTable {
	t := learnedTable{}
	for _, m := range macs {
		t[m.Entry()] = m.PortID
	}
	return t
}

func (t learnedTable) Lookup(bridgeID string, vlan uint16, mac packet.MAC) (string, bool) {
	p, ok := t[nsdb.MACEntry{BridgeID: bridgeID, VLAN: vlan, MAC: mac}]
	return p, ok
}

func (t learnedTable) Learn(string, uint16, packet.MAC, string, int64) {}

// freshStatusWait is how long a datapath status read waits for the agent
// to answer its request before serving the last status it published.
const freshStatusWait = 2 * time.Second

// datapathStatus serves what the host's agent last published about its
// datapath (mm-dpctl's view), 404 when no agent runs there.
func (a *API) datapathStatus(w http.ResponseWriter, r *http.Request) {
	id := pathID(r, "id")
	if _, err := a.store.Get(r.Context(), model.HostKind, id); err != nil {
		a.fail(w, r, err)
		return
	}
	var st *agentstatus.Datapath
	var err error
	switch s := a.store.(type) {
	case interface {
		FreshDatapathStatus(context.Context, string, time.Duration) (*agentstatus.Datapath, error)
	}:
		// Agents republish counters only every half minute unless asked:
		// ask, and wait a little for the answer.
		st, err = s.FreshDatapathStatus(r.Context(), id, freshStatusWait)
	case interface {
		DatapathStatus(context.Context, string) (*agentstatus.Datapath, error)
	}:
		st, err = s.DatapathStatus(r.Context(), id)
	default:
		writeError(w, &httpError{http.StatusNotImplemented, "NotImplemented", "", "this store keeps no datapath status"})
		return
	}
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
