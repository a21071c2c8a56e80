package cli

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// trace asks the server what the simulation does with a described packet
// entering by a port, as ovn-trace does for OVN: nothing is sent.
//
//	trace port bridge0:port1 src 10.0.1.11 dst 10.0.2.12 proto tcp dst-port 22
//
// The words are fields of a row that is not an object type: the request's
// fields, with the same value types, references and completion as object
// fields, so the parser and the body builder need nothing of their own.

// traceRow holds the words of a trace. Its JSON names are the request's.
var traceRow = func() *Row {
	ref := func(json, cli, kind, doc string) *model.Field {
		return &model.Field{JSON: json, CLI: cli, Ref: kind, Type: reflect.TypeFor[string](), Doc: doc}
	}
	val := func(json, cli string, t reflect.Type, doc string) *model.Field {
		return &model.Field{JSON: json, CLI: cli, Type: t, Doc: doc}
	}
	u16, u8 := reflect.TypeFor[uint16](), reflect.TypeFor[uint8]()
	addr, mac, flag := reflect.TypeFor[netip.Addr](), reflect.TypeFor[packet.MAC](), reflect.TypeFor[bool]()
	port := ref("in_port_id", "port", model.PortKind.Name, "the port the packet enters by")
	port.Required = true
	src := val("src", "src", addr, "the packet's source address")
	dst := val("dst", "dst", addr, "the packet's destination address")
	src.Required, dst.Required = true, true
	proto := val("proto", "proto", reflect.TypeFor[traceProto](), "icmp (the default), tcp, udp or a protocol number")
	proto.Enum = []string{"icmp", "tcp", "udp"} // offered by completion; traceProto also takes numbers
	vlan := val("vlan", "vlan", u16, "an 802.1Q tag")
	vlan.Max = new(int64(4095))
	ttl := val("ttl", "ttl", u8, "the IP TTL or hop limit (default 64)")
	ttl.Min = new(int64(1))
	length := val("length", "length", reflect.TypeFor[int](), "the IP datagram's length in bytes, padded with zeros (default: the least)")
	length.Min = new(int64(0))
	r := &Row{Name: "trace", Word: "trace", Flags: true, Fields: []*model.Field{
		port,
		ref("in_port_id", "in-port", model.PortKind.Name, "the same as port"),
		src, dst, proto,
		val("src_port", "src-port", u16, "the TCP or UDP source port"),
		val("dst_port", "dst-port", u16, "the TCP or UDP destination port"),
		val("eth_src", "src-mac", mac, "the Ethernet source (default: a MAC learned on the port)"),
		val("eth_dst", "dst-mac", mac, "the Ethernet destination (default: what the VM would use: the gateway router port's MAC off the port's subnet, else the destination's known or learned MAC, broadcast only when unknown)"),
		vlan, ttl, length,
		val("df", "df", flag, "set IPv4's don't-fragment bit (a bare df means true)"),
		val("arp", "arp", flag, "an ARP request from src for dst instead of an IP packet (a bare arp means true)"),
		ref("host_id", "host", model.HostKind.Name, "whose view of the topology (default: the host the port is bound to)"),
	}}
	r.indexFields()
	r.checkWords()
	return r
}()

// traceDoc is what describe says about trace.
const traceDoc = "What the simulation does with a packet entering by a port (nothing is sent)."

// traceProto is a protocol word or number, checked before the request goes
// out so a typo is a syntax error at the word.
type traceProto string

func (p *traceProto) UnmarshalText(b []byte) error {
	s := strings.ToLower(string(b))
	switch s {
	case "icmp", "icmp6", "icmpv6", "tcp", "udp":
	default:
		if _, err := strconv.ParseUint(s, 10, 8); err != nil {
			return fmt.Errorf("%q is not icmp, tcp, udp or a protocol number 0..255", string(b))
		}
	}
	*p = traceProto(s)
	return nil
}

func (p traceProto) MarshalText() ([]byte, error) { return []byte(p), nil }

// trace parses the words after "trace": field/value pairs in any order, of
// which port, src and dst are required.
func (p *parser) trace() (*Command, error) {
	as, err := p.assigns(traceRow, false)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, f := range traceRow.fields {
		if f.Required && !slices.ContainsFunc(as, func(a Assign) bool { return a.Fields[0].JSON == f.JSON }) {
			missing = append(missing, f.CLI)
		}
	}
	if len(missing) > 0 {
		return nil, &UserError{Msg: "trace needs " + strings.Join(missing, ", ") +
			": trace port bridge0:port0 src 10.0.0.5 dst 10.0.1.5 [proto tcp dst-port 22 …]"}
	}
	return &Command{Verb: VerbTrace, Row: traceRow, Assigns: as}, nil
}

// traceResult is the server's answer (api/native's TraceResponse).
type traceResult struct {
	Packet string `json:"packet"`
	Steps  []struct {
		Depth   int    `json:"depth"`
		Kind    string `json:"kind"`
		Object  string `json:"object"`
		Message string `json:"message"`
	} `json:"steps"`
	Verdict   string   `json:"verdict"`
	Reason    string   `json:"reason"`
	Actions   []string `json:"actions"`
	Generated []string `json:"generated"`
}

func (e *Engine) trace(s *session, c *Command) error {
	body := map[string]any{}
	if err := s.body(body, c.Assigns, nil); err != nil {
		return err
	}
	b, err := s.api.Post(s.ctx, "/trace", body)
	if err != nil {
		return err
	}
	if e.JSON {
		return e.printJSON(json.RawMessage(b))
	}
	var tr traceResult
	if err := json.Unmarshal(b, &tr); err != nil {
		return &InternalError{Err: fmt.Errorf("POST /trace: the answer is not a trace: %w", err)}
	}
	return e.printLines(s, tr.lines())
}

// lines renders a trace the way ovn-trace reads: the packet, then each step
// as "KIND OBJECT: MESSAGE", indented by flood depth, then the verdict, the
// flow's actions and any packets the walk generated, one per line.
func (tr *traceResult) lines() []string {
	out := []string{"packet " + strings.TrimSpace(tr.Packet)}
	for _, st := range tr.Steps {
		out = append(out, fmt.Sprintf("%s%-9s%s: %s", strings.Repeat("  ", st.Depth), st.Kind, st.Object, st.Message))
	}
	v := "verdict " + tr.Verdict
	if tr.Reason != "" {
		v += " (" + tr.Reason + ")"
	}
	out = append(out, v)
	for _, a := range tr.Actions {
		out = append(out, "action "+a)
	}
	for _, g := range tr.Generated {
		out = append(out, "generated "+g)
	}
	return out
}
