package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/model"
)

// newTestEngine starts a fakeAPI with one live host ("carlsberg", as an
// agent would register it) and returns an engine talking to it.
func newTestEngine(t *testing.T) (*Engine, *fakeAPI, *bytes.Buffer) {
	t.Helper()
	fake := newFakeAPI()
	fake.Seed(&model.Host{Name: "carlsberg"}, true)
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	c, err := NewClient(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	out := &bytes.Buffer{}
	return &Engine{API: c, Out: out}, fake, out
}

// step is one line of a session and what it must print; a want starting
// with "~" is a regular expression for the whole output.
type step struct{ line, want string }

func runSession(t *testing.T, e *Engine, out *bytes.Buffer, steps []step) {
	t.Helper()
	for _, s := range steps {
		out.Reset()
		if err := e.Run(context.Background(), s.line); err != nil {
			t.Fatalf("%s: %v", s.line, err)
		}
		got := strings.TrimSuffix(out.String(), "\n")
		if re, ok := strings.CutPrefix(s.want, "~"); ok {
			if !regexp.MustCompile("^(?s:" + re + ")$").MatchString(got) {
				t.Errorf("%s:\n got %q\nwant /%s/", s.line, got, re)
			}
		} else if got != s.want {
			t.Errorf("%s:\n got %q\nwant %q", s.line, got, s.want)
		}
	}
}

// theSession is the brief's midonet-cli session. The model does not let a
// port be both linked to a peer and bound to an interface, so the peer is
// cleared (and the port's line checked) before the port is bound.
var theSession = []step{
	{"create tunnel-zone name vxlan-tz type vxlan", "tzone0"},
	{"list tunnel-zone", "tzone tzone0 name vxlan-tz type vxlan"},
	{"create bridge name internal", "bridge0"},
	{"bridge bridge0 add port", "bridge0:port0"},
	{"create router name MidoNet Provider Router", "router0"},
	{"router router0 add port address 10.0.0.1 net 10.0.0.0/24", "router0:port0"},
	{"bridge bridge0 port port0 set peer router0:port0", ""},
	{"router router0 list port", `~port port0 device router0 state up plugged no mac [0-9a-f:]{17} address 10.0.0.1 net 10.0.0.0/24 peer bridge0:port0`},
	{"bridge bridge0 port list", "port port0 device bridge0 state up plugged no peer router0:port0"},
	{"router router0 add route src 0.0.0.0/0 dst 10.0.0.0/24 type normal port router0:port0", "router0:route0"},
	{"router router0 list route", "route route0 type normal src 0.0.0.0/0 dst 10.0.0.0/24 port router0:port0 weight 100"},
	{"bridge bridge0 add dhcp subnet 10.0.0.0/24 gw 10.0.0.1", "bridge bridge0 gw 10.0.0.1 server 10.0.0.1 subnet 10.0.0.0/24"},
	{"list router", "router router0 name MidoNet Provider Router state up"},
	{"list bridge", "bridge bridge0 name internal state up"},
	{"list host", "host host0 name carlsberg alive true"},
	{"tunnel-zone tzone0 add member host host0 address 192.168.100.201", "zone tzone0 host host0 address 192.168.100.201"},
	{"bridge bridge0 port port0 clear peer", ""},
	{"host host0 add binding interface leftdp port bridge0:port0", "host host0 interface leftdp port bridge0:port0"},
	{"create chain name in", "chain0"},
	{"chain chain0 add rule dst 10.81.14.201 proto 6 dst-port 80 type dnat action accept target 172.16.20.100:80", "chain0:rule0"},
	{"router router0 set infilter chain0", ""},
}

func TestSessionAgainstFake(t *testing.T) {
	e, _, out := newTestEngine(t)
	runSession(t, e, out, theSession)
	runSession(t, e, out, []step{
		{"list router", "router router0 name MidoNet Provider Router state up infilter chain0"},
		{"chain chain0 list rule", "rule rule0 dst 10.81.14.201/32 proto 6 dst-port 80 pos 1 type dnat action accept target 172.16.20.100:80"},
		{"host host0 list binding", "host host0 interface leftdp port bridge0:port0"},
		{"bridge bridge0 list port", "port port0 device bridge0 state up plugged yes host host0 interface leftdp"},
		{"list port", "~port bridge0:port0 device bridge0 .*\nport router0:port0 device router0 .*"},
		{"tunnel-zone tzone0 list member", "zone tzone0 host host0 address 192.168.100.201"},
		{"bridge bridge0 dhcp subnet 10.0.0.0/24 add host name vm1 mac 02:00:00:00:00:05 address 10.0.0.5", "name vm1 mac 02:00:00:00:00:05 address 10.0.0.5"},
		{"list bridge bridge0 dhcp subnet 10.0.0.0/24 host", "name vm1 mac 02:00:00:00:00:05 address 10.0.0.5"},
	})
}

func TestVerbFormsAndAbbreviations(t *testing.T) {
	e, _, out := newTestEngine(t)
	runSession(t, e, out, []step{
		{"create router name edge", "router0"},
		{"create router name core", "router1"},
		{"router router0 add port address 10.0.0.1 net 10.0.0.0/24", "router0:port0"},
		{"router router0 port add address 10.0.1.1 net 10.0.1.0/24", "router0:port1"},
		{"create router router1 port address 10.0.2.1 net 10.0.2.0/24", "router1:port0"},
		{"l router name core", "router router1 name core state up"},
		{"li router state up name edge", "router router0 name edge state up"},
		{"router router0 route list", ""},
		{"router router0 port port1 sh address", "10.0.1.1"},
		{"router router0 port port1 address show", "10.0.1.1"},
		{"show port router0:port1 device", "router0"},
		{"show router router0", "router router0 name edge state up"},
		{"router router1 list", "router router1 name core state up"},
		{"list router router1 port", "~port port0 device router1 .* address 10.0.2.1 net 10.0.2.0/24"},
		{"router router0 set name 'edge one' state down", ""},
		{`show router router0`, "router router0 name edge one state down"},
		{"set router router0 state up", ""},
		{"router router0 clear name", ""},
		{"router router0 show", "router router0 state up"},
		{"router router0 add route dst 10.1.0.0/16 gw 10.0.0.254 port port1", "router0:route0"},
		{"router router0 add route dst 10.2.0.0/16 port router router0 port port0 weight 10", "router0:route1"},
		{"router router0 list route", "route route0 type normal src 0.0.0.0/0 dst 10.1.0.0/16 gw 10.0.0.254 port router0:port1 weight 100\n" +
			"route route1 type normal src 0.0.0.0/0 dst 10.2.0.0/16 port router0:port0 weight 10"},
		{"router router0 del route route0", ""},
		{"router router0 list route", "route route0 type normal src 0.0.0.0/0 dst 10.2.0.0/16 port router0:port0 weight 10"},
		{"delete router router0 route route0", ""},
		{"router router0 port port0 delete", ""},
		{"router router0 list port", "~port port0 device router0 .* address 10.0.1.1 net 10.0.1.0/24"},
		{"router router0 delete port port0", ""},
		{"delete router router0", ""},
		{"list router", "router router0 name core state up"}, // renumbered
		{"describe", "~Object types.*"},
		{"desc router", "~router: A virtual L3 router\\.\n.*children: port route bgp-peer bgp-network\n.*"},
		{"router router0 describe port", "~port: A port of a bridge or router\\.\n.*"},
	})
}

func TestRulesNegationListsAndPositions(t *testing.T) {
	e, _, out := newTestEngine(t)
	runSession(t, e, out, []step{
		{"create router", "router0"},
		{"router router0 add port address 10.0.0.1 net 10.0.0.0/24", "router0:port0"},
		{"router router0 add port address 10.0.1.1 net 10.0.1.0/24", "router0:port1"},
		{"create chain name fw", "chain0"},
		{"create chain name other", "chain1"},
		{"chain chain0 add rule src !10.0.0.0/16 in-ports router0:port0,router0:port1 type drop", "chain0:rule0"},
		{"chain chain0 add rule type jump jump-to chain chain1 pos 1", "chain0:rule1"},
		{"chain chain0 add rule proto ! 17 type accept", "chain0:rule2"},
		// Aliases follow creation order; pos is the place in the chain.
		{"chain chain0 list rule", "rule rule0 in-ports router0:port0,router0:port1 src !10.0.0.0/16 pos 2 type drop\n" +
			"rule rule1 pos 1 type jump jump-to chain1\n" +
			"rule rule2 proto !17 pos 3 type accept"},
		{"chain chain0 list rule type drop", "rule rule0 in-ports router0:port0,router0:port1 src !10.0.0.0/16 pos 2 type drop"},
		{"chain chain0 list rule src !10.0.0.0/16", "rule rule0 in-ports router0:port0,router0:port1 src !10.0.0.0/16 pos 2 type drop"},
		{"chain chain0 list rule src 10.0.0.0/16", ""},
		{"chain chain0 list rule in-ports router0:port1", "rule rule0 in-ports router0:port0,router0:port1 src !10.0.0.0/16 pos 2 type drop"},
		{"chain chain0 rule rule0 set src 10.9.0.0/16", ""},
		{"chain chain0 rule rule0 show src", "10.9.0.0/16"},
		{"chain chain0 rule rule2 clear proto", ""},
		{"chain chain0 rule rule2 show", "rule rule2 pos 3 type accept"},
		// The anti-spoofing conditions come from the schema like the others.
		{"chain chain1 add rule ethertype 2054 arp-sha 02:00:00:00:00:01 src 10.0.0.5 type accept", "chain1:rule0"},
		{"chain chain1 add rule ethertype 34525 proto 58 src-port 136 nd-target !2001:db8::/64 type drop", "chain1:rule1"},
		{"chain chain1 list rule", "rule rule0 ethertype 2054 src 10.0.0.5/32 arp-sha 02:00:00:00:00:01 pos 1 type accept\n" +
			"rule rule1 ethertype 34525 proto 58 src-port 136 nd-target !2001:db8::/64 pos 2 type drop"},
	})
	if err := e.Run(context.Background(), "chain chain1 add rule nd-target 10.0.0.5 type drop"); err == nil || !strings.Contains(err.Error(), "nd-target: 10.0.0.5/32 is not IPv6") {
		t.Errorf("an IPv4 nd-target: got %v, want an error naming nd-target", err)
	}
}

func TestIdlessObjects(t *testing.T) {
	e, _, out := newTestEngine(t)
	runSession(t, e, out, []step{
		{"create port-group name web", "pgroup0"},
		{"create bridge", "bridge0"},
		{"bridge bridge0 add port", "bridge0:port0"},
		{"bridge bridge0 add port", "bridge0:port1"},
		{"port-group pgroup0 add member port bridge0:port1", "group pgroup0 port bridge0:port1"},
		{"port-group pgroup0 member add port bridge0:port0", "group pgroup0 port bridge0:port0"},
		{"port-group pgroup0 delete member port bridge0:port1", ""},
		{"port-group pgroup0 list member", "group pgroup0 port bridge0:port0"},
		{"create ip-address-group name dns", "ipg0"},
		{"ip-address-group ipg0 add address address 10.0.0.53", "group ipg0 address 10.0.0.53"},
		{"ip-address-group ipg0 address address 10.0.0.53 delete", ""},
		{"ip-address-group ipg0 list address", ""},
		{"bridge bridge0 add dhcp subnet 10.1.0.0/24", "bridge bridge0 subnet 10.1.0.0/24"},
		{"set bridge bridge0 dhcp subnet 10.1.0.0/24 gw 10.1.0.1", ""},
		{"bridge bridge0 dhcp subnet 10.1.0.0/24 show gw", "10.1.0.1"},
		{"host host0 binding add interface tap0 port bridge0:port1", "host host0 interface tap0 port bridge0:port1"},
		{"host host0 delete binding interface tap0", ""},
		{"host host0 list binding", ""},
		{"create load-balancer name lb", "lb0"},
		{"load-balancer lb0 add pool", "lb0:pool0"},
		{"load-balancer lb0 pool pool0 add member address 10.0.0.7 port 80", "lb0:pool0:pm0"},
		{"load-balancer lb0 add vip pool pool0 address 192.0.2.10 port 80", "lb0:vip0"},
		{"load-balancer lb0 list vip", "vip vip0 pool lb0:pool0 address 192.0.2.10 port 80"},
		{"load-balancer lb0 pool pool0 member pm0 show", "member pm0 address 10.0.0.7 port 80 weight 1 state up status no_monitor"},
		{"load-balancer lb0 pool pool0 list member", "member pm0 address 10.0.0.7 port 80 weight 1 state up status no_monitor"},
		{"load-balancer lb0 pool pool0 member pm0 show status", "no_monitor"},
	})
}

func TestErrors(t *testing.T) {
	e, _, _ := newTestEngine(t)
	for _, s := range []string{"create router name r", "create bridge", "bridge bridge0 add port", "create chain"} {
		if err := e.Run(context.Background(), s); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct{ line, want string }{
		{"list brdge", "Syntax error at: brdge"},
		{"create router nme x", "Syntax error at: nme x\n  router fields: name state tenant infilter outfilter load-balancer asn"},
		{"router router0 set state sideways", "Syntax error at: sideways\n  state: \"sideways\" is not one of up, down"},
		{"router router0 add route dst 10.0.0.0/33", "Syntax error at: 10.0.0.0/33\n  dst: \"10.0.0.0/33\" is not a prefix like 10.0.0.0/24 (a bare address means /32)"},
		{"create router", ""},
		{"list", "Missing arguments, incomplete command"},
		{"router router0 set name", "Missing arguments, incomplete command"},
		{"router router9 show", "User error: there is no router router9 (there are 2: router0 to router1)"},
		{"bridge bridge0 port port7 show", "User error: there is no port port7 of bridge0 (there is only port0)"},
		{"show port port0", "User error: port0 needs its router or bridge: write router0:port0 or bridge0:port0"},
		{"router router0 set infilter bridge0", "User error: infilter wants a chain (an alias, a UUID or a typed path), not bridge0"},
		{"router router0 set infilter bridge bridge0", "User error: infilter wants a chain, and bridge bridge0 is a bridge"},
		{"host host0 set alive false", "User error: alive is read-only: the server sets it"},
		{"router router0 add port address 10.0.0.1", "User error: net: a router port address needs its network (net)"},
		{"delete chain chain0", ""},
		{"router router0 set infilter chain0", "User error: there is no chain chain0 (there are none)"},
		{"bridge bridge0 port port0 set peer bridge0:port0", "User error: peer: a port cannot be its own peer"},
	} {
		err := e.Run(context.Background(), tc.line)
		got := ""
		if err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.line, got, tc.want)
		}
	}
}

func TestJSONOutput(t *testing.T) {
	e, _, out := newTestEngine(t)
	e.JSON = true
	if err := e.Run(context.Background(), "create bridge name a"); err != nil {
		t.Fatal(err)
	}
	var created map[string]any
	if err := json.Unmarshal(out.Bytes(), &created); err != nil || created["name"] != "a" || !model.IsUUID(created["id"].(string)) {
		t.Fatalf("create -o json: %v %s", err, out)
	}
	out.Reset()
	if err := e.Run(context.Background(), "list bridge"); err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal(out.Bytes(), &list); err != nil || len(list) != 1 || list[0]["id"] != created["id"] {
		t.Fatalf("list -o json: %v %s", err, out)
	}
	out.Reset()
	if err := e.Run(context.Background(), "bridge bridge0 show id"); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out.String()); got != `"`+created["id"].(string)+`"` {
		t.Fatalf("show id -o json: %s", got)
	}
}

func TestScriptStopsAtFirstFailure(t *testing.T) {
	e, _, out := newTestEngine(t)
	var errOut bytes.Buffer
	script := "# set up\ncreate bridge name a\n\nbridge bridge0 add port\nbridge bridge9 add port\ncreate bridge name never\n"
	err := e.RunScript(context.Background(), strings.NewReader(script), &errOut)
	var ue *UserError
	if !errors.As(err, &ue) {
		t.Fatalf("RunScript: %v", err)
	}
	if out.String() != "bridge0\nbridge0:port0\n" || !strings.HasPrefix(errOut.String(), "User error: there is no bridge bridge9") {
		t.Fatalf("out %q err %q", out, errOut.String())
	}
	out.Reset()
	if err := e.Run(context.Background(), "list bridge"); err != nil || out.String() != "bridge bridge0 name a state up\n" {
		t.Fatalf("the script went on after the failure: %q %v", out, err)
	}
}

// The BGP grammar of the issue: an ASN on the router, a peer below the
// uplink port, a network below the router; the peer is listed below
// either and named by its alias among the router's peers.
func TestBGPSession(t *testing.T) {
	e, _, out := newTestEngine(t)
	runSession(t, e, out, []step{
		{"create router name edge", "router0"},
		{"router router0 add port address 10.0.0.1 net 10.0.0.0/24", "router0:port0"},
		{"router router0 add port address 198.51.100.2 net 198.51.100.0/30", "router0:port1"},
		{"router router0 set asn 64512", ""},
		{"router router0 port port1 add bgp-peer asn 65001 address 198.51.100.1", "router0:peer0"},
		{"router router0 add bgp-peer asn 65002 address 10.0.0.9 bfd off", "router0:peer1"},
		{"router router0 add bgp-network net 203.0.113.0/24", "router0:bgpnet0"},
		{"router router0 list bgp-network", "bgp-network bgpnet0 net 203.0.113.0/24"},
		{"router router0 port port1 list bgp-peer", "~bgp-peer peer0 port router0:port1 asn 65001 address 198.51.100.1 keepalive 1 hold-time 3 bfd on bfd-interval 100 bfd-multiplier 3 max-prefixes 1000.*"},
		{"router router0 list bgp-peer", "~bgp-peer peer0 port router0:port1 asn 65001 .*\nbgp-peer peer1 port router0:port0 asn 65002 address 10.0.0.9 keepalive 1 hold-time 3 bfd off .*"},
		{"router router0 bgp-peer peer1 set bfd-interval 50", ""},
		{"router router0 bgp-peer peer1 show bfd-interval", "50"},
		{"router router0 bgp-peer peer1 set password k3y-md5", ""},
		{"router router0 bgp-peer peer1 clear password", ""},
		{"router router0 bgp-peer peer1 delete", ""},
		{"router router0 list bgp-peer", "~bgp-peer peer0 .*"},
		{"show router router0 asn", "64512"},
	})
}
