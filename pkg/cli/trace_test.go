package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/shlex"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/api/native"
	"github.com/nagare/nagare/pkg/model"
)

func TestParseTraceAndViews(t *testing.T) {
	checkParses(t, []parseCase{
		{"trace port bridge0:port1 src 10.0.1.11 dst 10.0.2.12 proto tcp dst-port 22",
			`trace row=trace a=[port=@bridge0:port1 src="10.0.1.11" dst="10.0.2.12" proto="tcp" dst-port=22]`},
		{"trace in-port router0:port0 dst 10.0.2.12 src 10.0.1.11",
			`trace row=trace a=[in-port=@router0:port0 dst="10.0.2.12" src="10.0.1.11"]`},
		{"trace port router router0 port port1 src fd00::1 dst fd00::2 proto 132",
			`trace row=trace a=[port=@[router:router0/port:port1] src="fd00::1" dst="fd00::2" proto="132"]`},
		{"trace port bridge0:port0 src 10.0.0.1 dst 10.0.0.2 proto UDP src-port 5353 dst-port 53 ttl 1 length 1500 vlan 10 " +
			"src-mac 02:00:00:00:00:0a dst-mac 02:00:00:00:00:0b host host1",
			`trace row=trace a=[port=@bridge0:port0 src="10.0.0.1" dst="10.0.0.2" proto="udp" src-port=5353 dst-port=53 ttl=1 length=1500 vlan=10 ` +
				`src-mac="02:00:00:00:00:0a" dst-mac="02:00:00:00:00:0b" host=@host1]`},
		// df and arp stand alone for true, or take a value.
		{"trace port bridge0:port0 src 10.0.0.1 dst 10.0.0.2 df", `trace row=trace a=[port=@bridge0:port0 src="10.0.0.1" dst="10.0.0.2" df=true]`},
		{"trace arp port bridge0:port0 src 10.0.0.1 dst 10.0.0.2", `trace row=trace a=[arp=true port=@bridge0:port0 src="10.0.0.1" dst="10.0.0.2"]`},
		{"trace df no arp yes port bridge0:port0 src 10.0.0.1 dst 10.0.0.2", `trace row=trace a=[df=false arp=true port=@bridge0:port0 src="10.0.0.1" dst="10.0.0.2"]`},
		{"describe trace", "describe row=trace"},

		{"host host0 show datapath", "show path=host:host0 v=datapath"},
		{"show host host0 datapath", "show path=host:host0 v=datapath"},
		{"host host0 datapath show", "show path=host:host0 v=datapath"},
		{"host host0 datapath sh", "show path=host:host0 v=datapath"},
		{"host host0 list flow", "list path=host:host0 v=flow"},
		{"host host0 flow list", "list path=host:host0 v=flow"},
		{"list host host0 flow", "list path=host:host0 v=flow"},
		{"host host0 show flow", "show path=host:host0 v=flow"},
		// The host's own fields and children are unchanged.
		{"host host0 show name", "show path=host:host0 f=[name]"},
		{"host host0 list binding", "list path=host:host0 row=binding"},
		{"host host0 list", "show path=host:host0"},
	})
}

func TestParseTraceErrors(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"trace", "User error: trace needs port, src, dst: trace port bridge0:port0 src 10.0.0.5 dst 10.0.1.5 [proto tcp dst-port 22 …]"},
		{"trace port bridge0:port0 src 10.0.0.1", "User error: trace needs dst: trace port bridge0:port0 src 10.0.0.5 dst 10.0.1.5 [proto tcp dst-port 22 …]"},
		{"trace port bridge0:port0 src 10.0.0.1 dst 10.0.0.2 proto sctpx", "Syntax error at: sctpx\n  proto: \"sctpx\" is not icmp, tcp, udp or a protocol number 0..255"},
		{"trace port bridge0:port0 src 10.0.0.1 dst 10.0.0.2 proto 256", "Syntax error at: 256\n  proto: \"256\" is not icmp, tcp, udp or a protocol number 0..255"},
		{"trace port bridge0:port0 src 10.0.0.1 dst 10.0.0.300", "Syntax error at: 10.0.0.300\n  dst: \"10.0.0.300\" is not an IP address"},
		{"trace port bridge0:port0 src 10.0.0.1 dst 10.0.0.2 vlan 4096", "Syntax error at: 4096\n  vlan: 4096 is above the maximum 4095"},
		{"trace port bridge0:port0 src 10.0.0.1 dst 10.0.0.2 ttl 0", "Syntax error at: 0\n  ttl: 0 is below the minimum 1"},
		{"trace port bridge0:port0 src 10.0.0.1 dst 10.0.0.2 dst-port http", "Syntax error at: http\n  dst-port: \"http\" is not an integer 0..65535"},
		{"trace port bridge0:port0 src 10.0.0.1 dst 10.0.0.2 df maybe", "Syntax error at: maybe\n  trace fields: " +
			"port in-port src dst proto src-port dst-port src-mac dst-mac vlan ttl length df arp host"},
		{"trace port bridge0:port0 src 10.0.0.1 dst 10.0.0.2 colour blue", "Syntax error at: colour blue\n  trace fields: " +
			"port in-port src dst proto src-port dst-port src-mac dst-mac vlan ttl length df arp host"},
		{"trace port", "Missing arguments, incomplete command"},
		{"host host0 datapath", "Missing arguments, incomplete command"},
		{"host host0 datapath set", "Syntax error at: set"},
		{"host host0 datapath show extra", "Syntax error at: extra"},
		{"host host0 list flow extra", "Syntax error at: extra"},
		{"host host0 add flow", "Syntax error at: flow\n  host children: binding"},
		{"bridge bridge0 show datapath", "Syntax error at: datapath\n  bridge fields: name state tenant infilter outfilter"},
	} {
		words, _ := shlex.Split(tc.line)
		_, err := Parse(words)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.line, err, tc.want)
		}
	}
}

// traceTopology: a bridge "left" whose port0 is bound on host0, a router
// "edge" linked to it, and a bridge with no name.
func traceTopology(t *testing.T) (*Engine, *fakeAPI, *bytes.Buffer) {
	t.Helper()
	e, fake, out := newTestEngine(t)
	runSession(t, e, out, []step{
		{"create bridge name left", "bridge0"},
		{"bridge bridge0 add port", "bridge0:port0"},
		{"host host0 add binding interface tap-vm1 port bridge0:port0", "host host0 interface tap-vm1 port bridge0:port0"},
		{"create router name edge", "router0"},
		{"router router0 add port address 10.0.1.1 net 10.0.1.0/24", "router0:port0"},
		{"bridge bridge0 add port peer router0:port0", "bridge0:port1"},
		{"create bridge", "bridge1"},
		{"bridge bridge1 add port", "bridge1:port0"},
	})
	out.Reset()
	return e, fake, out
}

func TestTraceAgainstFake(t *testing.T) {
	e, fake, out := traceTopology(t)
	ctx := context.Background()
	if err := e.Run(ctx, "trace port bridge0:port0 src 10.0.1.11 dst 10.0.2.12 proto tcp dst-port 22 src-port 40000 ttl 9 df src-mac 02:00:00:00:00:0a vlan 7 length 100"); err != nil {
		t.Fatal(err)
	}
	// The simulation's DEVICE:ID port names and bare ids become aliases.
	want := "packet 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ipv4 10.0.1.11 > 10.0.2.12 tcp\n" +
		"ingress  bridge0:port0: ingress port bridge0:port0\n" +
		"bridge   left: dst unknown: flood\n" +
		"  output   bridge0:port0: output to host host0\n" +
		"verdict forward\n" +
		"action output(port bridge0:port0 interface tap-vm1)\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	ports, _ := fake.List(model.PortKind, "", "")
	req := fake.lastTrace
	if req.InPortID != ports[0].GetMeta().ID || req.Src != netip.MustParseAddr("10.0.1.11") || req.Dst != netip.MustParseAddr("10.0.2.12") ||
		req.Proto != "tcp" || req.DstPort != 22 || req.SrcPort != 40000 || req.TTL != 9 || !req.DF || req.ARP ||
		req.EthSrc.String() != "02:00:00:00:00:0a" || !req.EthDst.IsZero() || req.VLAN != 7 || req.Length != 100 || req.HostID != "" {
		t.Errorf("request %+v", req)
	}

	out.Reset()
	if err := e.Run(ctx, "trace in-port router router0 port port0 host host0 arp src 10.0.1.1 dst 10.0.1.11"); err != nil {
		t.Fatal(err)
	}
	hosts, _ := fake.List(model.HostKind, "", "")
	if req := fake.lastTrace; req.InPortID != ports[1].GetMeta().ID || req.HostID != hosts[0].GetMeta().ID || !req.ARP || req.Proto != "" {
		t.Errorf("request %+v", req)
	}
	if !strings.Contains(out.String(), "\nrouter   edge: dst unknown: flood\n") {
		t.Errorf("got\n%s", out)
	}
}

// The answer's every part: depth, drops with their reason, generated
// packets, ids of unnamed devices (DEVICE-ID:PORT-ID), unknown ids.
func TestTraceRendering(t *testing.T) {
	e, fake, out := traceTopology(t)
	bridges, _ := fake.List(model.BridgeKind, "", "")
	ports, _ := fake.List(model.PortKind, "", "")
	hosts, _ := fake.List(model.HostKind, "", "")
	b1, p0, p1, p2, p3 := bridges[1].GetMeta().ID, ports[0].GetMeta().ID, ports[1].GetMeta().ID, ports[2].GetMeta().ID, ports[3].GetMeta().ID
	gone := "0badc0de-0000-4000-8000-000000000000"
	ts := func(depth int, kind, object, msg string) native.TraceStep {
		return native.TraceStep{Depth: depth, Kind: kind, Object: object, Message: msg}
	}
	fake.traceAnswer = &native.TraceResponse{
		Packet: "02:00:00:00:00:0a > ff:ff:ff:ff:ff:ff ipv4 10.0.1.11 > 10.0.1.255 proto 17 ttl 64 udp 1 > 2",
		Steps: []native.TraceStep{
			ts(0, "ingress", b1+":"+p3, "ingress port "+b1+":"+p3),
			ts(0, "bridge", b1, "dst ff:ff:ff:ff:ff:ff is multicast/broadcast: flood on vlan 0"),
			ts(1, "egress", "left:"+p0, "egress port left:"+p0),
			ts(1, "drop", "left:"+p0, "port is down (port-down)"),
			ts(1, "egress", "left:"+p2, "egress port left:"+p2),
			ts(2, "ingress", "edge:"+p1, "ingress port edge:"+p1),
			ts(2, "router", "edge", "route 10.0.1.0/24 port edge:"+p1+" (weight 100)"),
			ts(2, "generate", "edge:"+p1, "arp-request for 10.0.1.255 via host "+hosts[0].GetMeta().ID+" and chain "+gone),
		},
		Verdict:   "drop",
		Reason:    "no-route",
		Actions:   []string{},
		Generated: []string{"arp-request: 02:0a:00:00:00:01 > ff:ff:ff:ff:ff:ff arp op 1 10.0.1.1 (02:0a:00:00:00:01) > 10.0.1.255 (00:00:00:00:00:00)"},
	}
	if err := e.Run(context.Background(), "trace port bridge1:port0 src 10.0.1.11 dst 10.0.1.255 proto udp"); err != nil {
		t.Fatal(err)
	}
	want := "packet 02:00:00:00:00:0a > ff:ff:ff:ff:ff:ff ipv4 10.0.1.11 > 10.0.1.255 proto 17 ttl 64 udp 1 > 2\n" +
		"ingress  bridge1:port0: ingress port bridge1:port0\n" +
		"bridge   bridge1: dst ff:ff:ff:ff:ff:ff is multicast/broadcast: flood on vlan 0\n" +
		"  egress   bridge0:port0: egress port bridge0:port0\n" +
		"  drop     bridge0:port0: port is down (port-down)\n" +
		"  egress   bridge0:port1: egress port bridge0:port1\n" +
		"    ingress  router0:port0: ingress port router0:port0\n" +
		"    router   edge: route 10.0.1.0/24 port router0:port0 (weight 100)\n" +
		"    generate router0:port0: arp-request for 10.0.1.255 via host host0 and chain " + gone + "\n" +
		"verdict drop (no-route)\n" +
		"generated arp-request: 02:0a:00:00:00:01 > ff:ff:ff:ff:ff:ff arp op 1 10.0.1.1 (02:0a:00:00:00:01) > 10.0.1.255 (00:00:00:00:00:00)\n"
	if out.String() != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}

	// -o json is the server's answer.
	out.Reset()
	e.JSON = true
	if err := e.Run(context.Background(), "trace port bridge1:port0 src 10.0.1.11 dst 10.0.1.255"); err != nil {
		t.Fatal(err)
	}
	var got native.TraceResponse
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil || got.Verdict != "drop" || len(got.Steps) != 8 || got.Steps[0].Object != b1+":"+p3 {
		t.Errorf("-o json: %v\n%s", err, out)
	}
}

func TestTraceUserErrors(t *testing.T) {
	e, _, _ := traceTopology(t)
	for _, tc := range []struct{ line, want string }{
		{"trace port bridge0:port9 src 10.0.0.1 dst 10.0.0.2", "User error: there is no port port9 of bridge0 (there are 2: port0 to port1)"},
		{"trace port port0 src 10.0.0.1 dst 10.0.0.2", "User error: port: port0 needs its router or bridge: write router0:port0 or bridge0:port0"},
		{"trace port bridge0 src 10.0.0.1 dst 10.0.0.2", "User error: port wants a port (an alias, a UUID or a typed path), not bridge0"},
		{"trace port bridge0:port0 host router0 src 10.0.0.1 dst 10.0.0.2", "User error: host wants a host (an alias, a UUID or a typed path), not router0"},
		// The server's field names come back as the CLI's words.
		{"trace port 0badc0de-0000-4000-8000-000000000000 src 10.0.0.1 dst 10.0.0.2",
			`User error: port: port "0badc0de-0000-4000-8000-000000000000" does not exist`},
	} {
		err := e.Run(context.Background(), tc.line)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s:\n got %v\nwant %s", tc.line, err, tc.want)
		}
	}
}

func TestDatapathView(t *testing.T) {
	e, fake, out := traceTopology(t)
	ctx := context.Background()
	hosts, _ := fake.List(model.HostKind, "", "")
	ports, _ := fake.List(model.PortKind, "", "")
	h, p0, p1 := hosts[0].GetMeta().ID, ports[0].GetMeta().ID, ports[3].GetMeta().ID

	err := e.Run(ctx, "host host0 show datapath")
	var ue *UserError
	if !errors.As(err, &ue) || err.Error() != "User error: host host0 has no running agent" {
		t.Fatalf("no agent: %v", err)
	}
	if err := e.Run(ctx, "host host0 list flow"); err == nil || err.Error() != "User error: host host0 has no running agent" {
		t.Fatalf("no agent: %v", err)
	}

	fake.SetStatus(h, &agentstatus.Datapath{
		HostID: h, HostName: "carlsberg", Datapath: "userspace", Flows: 12, Hits: 5120, Misses: 14,
		FlowsInstalled: 40, FlowsExpired: 28, FlowsInvalidated: 1,
		VXLAN: agentstatus.Tunnel{RxPackets: 2600, TxPackets: 2590},
		Drops: map[string]uint64{"tunnel-unknown-key": 1, "malformed-truncated": 3, "port-gone": 0},
		Ports: []agentstatus.Port{
			{PortID: p1, Index: 1, Interface: "tap-vm2", RxPackets: 5, TxPackets: 6, RxDropped: 1},
			{PortID: p0, Index: 0, Interface: "tap-vm1", RxPackets: 2612, TxPackets: 2598},
		},
		FlowDump: []string{
			"in_port(0:" + p0 + ") eth(02:00:00:00:00:0a>02:0a:00:00:00:01 type 0x0800), class forward, packets 3, bytes 294, used 1s ago, actions output(1:tap-vm2)",
			"in_port(1:" + p1 + ") eth(02:00:00:00:00:0b>02:00:00:00:00:0a type 0x0800), class drop, packets 1, bytes 60, used 2s ago, actions drop",
		},
	})
	want := "datapath userspace host host0 flows 12 hits 5120 misses 14 lost 0 installed 40 expired 28 invalidated 1\n" +
		"port bridge0:port0 interface tap-vm1 index 0 rx 2612 tx 2598 rx-drops 0 tx-drops 0\n" +
		"port bridge1:port0 interface tap-vm2 index 1 rx 5 tx 6 rx-drops 1 tx-drops 0\n" +
		"tunnel vxlan rx 2600 tx 2590\n" +
		"tunnel gre rx 0 tx 0\n" +
		"drops malformed-truncated 3 tunnel-unknown-key 1\n"
	for _, line := range []string{"host host0 show datapath", "host host0 datapath show", "show host host0 datapath", "host name carlsberg show datapath"} {
		out.Reset()
		if err := e.Run(ctx, line); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if out.String() != want {
			t.Errorf("%s: got\n%s\nwant\n%s", line, out, want)
		}
	}
	wantFlows := "in_port(0:bridge0:port0) eth(02:00:00:00:00:0a>02:0a:00:00:00:01 type 0x0800), class forward, packets 3, bytes 294, used 1s ago, actions output(1:tap-vm2)\n" +
		"in_port(1:bridge1:port0) eth(02:00:00:00:00:0b>02:00:00:00:00:0a type 0x0800), class drop, packets 1, bytes 60, used 2s ago, actions drop\n"
	for _, line := range []string{"host host0 list flow", "host host0 flow list", "list host host0 flow"} {
		out.Reset()
		if err := e.Run(ctx, line); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		if out.String() != wantFlows {
			t.Errorf("%s: got\n%s\nwant\n%s", line, out, wantFlows)
		}
	}

	// -o json: the agent's status as the server serves it, or the flows.
	e.JSON = true
	out.Reset()
	if err := e.Run(ctx, "host host0 show datapath"); err != nil {
		t.Fatal(err)
	}
	var st agentstatus.Datapath
	if err := json.Unmarshal([]byte(out.String()), &st); err != nil || st.Hits != 5120 || len(st.Ports) != 2 || st.HostID != h {
		t.Errorf("-o json: %v\n%s", err, out)
	}
	out.Reset()
	if err := e.Run(ctx, "host host0 list flow"); err != nil {
		t.Fatal(err)
	}
	var flows []string
	if err := json.Unmarshal([]byte(out.String()), &flows); err != nil || len(flows) != 2 || !strings.Contains(flows[0], p0) {
		t.Errorf("-o json flows: %v\n%s", err, out)
	}
}

// A status with no ports, no drops and no flows still prints its
// datapath and tunnel lines, and an empty flow list prints nothing.
func TestDatapathViewEmpty(t *testing.T) {
	e, fake, out := newTestEngine(t)
	hosts, _ := fake.List(model.HostKind, "", "")
	fake.SetStatus(hosts[0].GetMeta().ID, &agentstatus.Datapath{HostID: hosts[0].GetMeta().ID, Datapath: "userspace"})
	runSession(t, e, out, []step{
		{"host host0 show datapath", "datapath userspace host host0 flows 0 hits 0 misses 0 lost 0 installed 0 expired 0 invalidated 0\n" +
			"tunnel vxlan rx 0 tx 0\ntunnel gre rx 0 tx 0"},
		{"host host0 list flow", ""},
	})
	e.JSON = true
	runSession(t, e, out, []step{{"host host0 list flow", "[]"}})
}

func TestDescribeTraceAndViews(t *testing.T) {
	e, _, out := newTestEngine(t)
	runSession(t, e, out, []step{
		{"describe trace", "~trace: What the simulation does with a packet entering by a port \\(nothing is sent\\)\\.\n" +
			"  trace port bridge0:port0 src .*\n  fields:\n    port .*required.*\n.*    proto +icmp\\|tcp\\|udp: icmp \\(the default\\).*\n.*    host .*"},
		{"describe host", "~host: .*\n  view datapath: .* \\(host host0 show datapath\\)\n  view flow: .*\n  fields:\n.*"},
	})
}

func TestCompleteTraceAndViews(t *testing.T) {
	e, _, _ := traceTopology(t)
	ctx := context.Background()
	for _, tc := range []struct {
		head, want string // "+x": includes x; "-x": lacks x
	}{
		{"", "+trace +list +router"},
		{"tr", "trace"},
		{"trace ", "+port +in-port +src +dst +proto +df +arp +host +ttl"},
		{"trace port ", "bridge0:port0 bridge0:port1 bridge1:port0 port router0:port0"},
		{"trace port bridge0:port0 ", "+src +dst -port -in-port"},
		{"trace in-port bridge0:port0 src 10.0.0.1 ", "+dst -src -port"},
		{"trace port bridge0:port0 proto ", "icmp tcp udp"},
		{"trace port bridge0:port0 host ", "host host0"},
		{"trace port bridge0:port0 df ", "+true +false +src +arp -df"},
		{"trace port bridge0:port0 ds", "dst dst-mac dst-port"},
		{"describe ", "+trace +router"},
		{"host host0 ", "+datapath +flow +binding +show"},
		{"host host0 show ", "+datapath +flow +name"},
		{"show host host0 ", "+datapath +flow"},
		{"host host0 list ", "binding datapath flow"},
		{"list host host0 ", "+flow +binding"},
		{"host host0 datapath ", "list show"},
	} {
		_, got := e.Complete(ctx, tc.head)
		exact := true
		for _, w := range strings.Fields(tc.want) {
			switch w[0] {
			case '+':
				exact = false
				if !slices.Contains(got, w[1:]) {
					t.Errorf("%q: %v lacks %q", tc.head, got, w[1:])
				}
			case '-':
				exact = false
				if slices.Contains(got, w[1:]) {
					t.Errorf("%q: %v has %q", tc.head, got, w[1:])
				}
			}
		}
		if exact && strings.Join(got, " ") != tc.want {
			t.Errorf("%q: got %v, want %s", tc.head, got, tc.want)
		}
	}
}

// trace's words are read where verbs and object words are not, but a verb
// among them would still confuse completion and readers.
func TestTraceWordsAreNotVerbs(t *testing.T) {
	for w := range traceRow.byWord {
		if verbOf(w) != 0 || topLevel[w] != nil && w != "port" && w != "host" {
			t.Errorf("trace word %q is a verb or a type", w)
		}
	}
}
