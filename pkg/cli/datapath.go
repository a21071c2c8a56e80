package cli

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/nagare/nagare/pkg/agentstatus"
)

// A host's datapath as its agent reports it when asked: what
// mm-dpctl printed on the host itself, read from anywhere through the API.
//
//	host host0 show datapath
//	datapath userspace host host0 flows 12 hits 5120 misses 14 lost 0 installed 40 expired 28 invalidated 0
//	port bridge0:port0 interface tap-vm1 index 0 rx 2612 tx 2598 rx-drops 0 tx-drops 0
//	tunnel vxlan rx 2600 tx 2590
//	tunnel gre rx 0 tx 0
//	drops malformed-truncated 3 tunnel-unknown-key 1
//
//	host host0 list flow
//	in_port(0:bridge0:port0) eth(…) ip(…), class …, packets 3, bytes 294, used 1.2s ago, actions …

var hostViews = []View{
	{Word: "datapath", Path: "datapath", Missing: "host %s has no running agent", Render: datapathLines,
		Doc: "the datapath's counters, ports and tunnels, as the host's agent reports them (host host0 show datapath)"},
	{Word: "flow", Path: "datapath", Missing: "host %s has no running agent", Render: flowLines,
		Doc: "the datapath's flows, one per line, up to 100 (host host0 list flow)"},
}

func decodeStatus(body []byte) (*agentstatus.Datapath, error) {
	var st agentstatus.Datapath
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("the datapath status is not what an agent publishes: %w", err)
	}
	return &st, nil
}

// datapathLines prints one line per thing, mm-dpctl's order: the datapath,
// its ports by index, its tunnels, its drops by reason (only when there
// were any). Port and host ids become aliases when printed.
func datapathLines(body []byte) ([]string, any, error) {
	st, err := decodeStatus(body)
	if err != nil {
		return nil, nil, err
	}
	host := st.HostID
	if host == "" {
		host = st.HostName
	}
	out := []string{fmt.Sprintf("datapath %s host %s flows %d hits %d misses %d lost %d installed %d expired %d invalidated %d",
		orDash(st.Datapath), orDash(host), st.Flows, st.Hits, st.Misses, st.Lost, st.FlowsInstalled, st.FlowsExpired, st.FlowsInvalidated)}
	ports := slices.Clone(st.Ports)
	sort.SliceStable(ports, func(i, j int) bool { return ports[i].Index < ports[j].Index })
	for _, p := range ports {
		out = append(out, fmt.Sprintf("port %s interface %s index %d rx %d tx %d rx-drops %d tx-drops %d",
			orDash(p.PortID), orDash(p.Interface), p.Index, p.RxPackets, p.TxPackets, p.RxDropped, p.TxDropped))
	}
	out = append(out,
		fmt.Sprintf("tunnel vxlan rx %d tx %d", st.VXLAN.RxPackets, st.VXLAN.TxPackets),
		fmt.Sprintf("tunnel gre rx %d tx %d", st.GRE.RxPackets, st.GRE.TxPackets))
	if fs := st.FlowState; fs != nil {
		out = append(out, fmt.Sprintf("flow-state entries %d max %d zones %d zone-max %d refused full %d zone-full %d exists %d nat-ports %d nat-blocks %d nat-exhausted %d state-packets sent %d received %d malformed %d",
			fs.Entries, fs.MaxEntries, fs.Zones, fs.MaxPerZone, fs.RefusedFull, fs.RefusedZoneFull, fs.RefusedExists,
			fs.PortsInUse, fs.BlocksLeased, fs.PortsExhausted, fs.StateSent, fs.StateReceived, fs.StateMalformed))
	}
	var drops []string
	for reason, n := range st.Drops {
		if n > 0 {
			drops = append(drops, fmt.Sprintf("%s %d", reason, n))
		}
	}
	if len(drops) > 0 {
		slices.Sort(drops)
		out = append(out, "drops "+strings.Join(drops, " "))
	}
	return out, json.RawMessage(body), nil
}

// flowLines prints the flow dump, one flow per line.
func flowLines(body []byte) ([]string, any, error) {
	st, err := decodeStatus(body)
	if err != nil {
		return nil, nil, err
	}
	if st.FlowDump == nil {
		st.FlowDump = []string{}
	}
	return st.FlowDump, st.FlowDump, nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// view shows the state a view names below the object of c's path.
func (e *Engine) view(s *session, c *Command) error {
	path, err := s.resolvePath(c.Path)
	if err != nil {
		return err
	}
	o := path[len(path)-1]
	url := "/" + o.row.plural() + "/" + o.id() + "/" + c.View.Path
	b, err := s.api.Get(s.ctx, url)
	if isNotFound(err) && c.View.Missing != "" {
		a, aerr := s.alias(o)
		if aerr != nil {
			a = o.id()
		}
		return &UserError{Msg: fmt.Sprintf(c.View.Missing, a)}
	}
	if err != nil {
		return err
	}
	lines, js, err := c.View.Render(b)
	if err != nil {
		return &InternalError{Err: fmt.Errorf("GET %s: %w", url, err)}
	}
	if e.JSON {
		return e.printJSON(js)
	}
	return e.printLines(s, lines)
}
