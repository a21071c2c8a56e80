package native_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
)

// A routed trace names every device on the way and ends in an
// encapsulation to the host the destination port is bound on.
func TestTraceRouted(t *testing.T) {
	e := newEnv(t)
	h0 := e.mustCreate("/hosts", map[string]any{"name": "hv0"})
	h1 := e.mustCreate("/hosts", map[string]any{"name": "hv1"})
	tz := e.mustCreate("/tunnel-zones", map[string]any{"name": "tz", "type": "vxlan"})
	e.mustCreate("/tunnel-zones/"+tz+"/tunnel-zone-members", map[string]any{"host_id": h0, "address": "10.99.0.1"})
	e.mustCreate("/tunnel-zones/"+tz+"/tunnel-zone-members", map[string]any{"host_id": h1, "address": "10.99.0.2"})
	b1 := e.mustCreate("/bridges", map[string]any{"name": "left"})
	b2 := e.mustCreate("/bridges", map[string]any{"name": "right"})
	r := e.mustCreate("/routers", map[string]any{"name": "edge"})
	vm1 := e.mustCreate("/bridges/"+b1+"/ports", map[string]any{"host_id": h0, "interface_name": "tap1"})
	vm2 := e.mustCreate("/bridges/"+b2+"/ports", map[string]any{"host_id": h1, "interface_name": "tap2"})
	for i, b := range []string{b1, b2} {
		net := []string{"10.0.1", "10.0.2"}[i]
		rp := e.mustCreate("/routers/"+r+"/ports", map[string]any{"address": net + ".1", "network": net + ".0/24"})
		bp := e.mustCreate("/bridges/"+b+"/ports", map[string]any{"peer_id": rp})
		_ = bp
		e.mustCreate("/routers/"+r+"/routes", map[string]any{"dst": net + ".0/24", "port_id": rp})
	}
	// The VM's MAC as an agent would have learned it.
	if _, err := e.cli.Put(context.Background(), nsdb.LearnedMAC{Host: h1, BridgeID: b2, MAC: [6]byte{2, 0, 0, 0, 0, 2}}.Key(), vm2); err != nil {
		t.Fatal(err)
	}
	st, obj, _ := e.do("POST", "/trace", map[string]any{"in_port_id": vm1, "src": "10.0.1.11", "dst": "10.0.2.12", "proto": "tcp", "dst_port": 22})
	if st != 200 {
		t.Fatalf("trace: %d %v", st, obj)
	}
	b, _ := json.MarshalIndent(obj, "", " ")
	text := string(b)
	if obj["verdict"] != "need-arp" && obj["verdict"] != "forward" {
		t.Fatalf("verdict %v\n%s", obj["verdict"], text)
	}
	for _, want := range []string{"left", "edge", "10.0.2.0/24"} {
		if !strings.Contains(text, want) {
			t.Errorf("trace does not mention %q:\n%s", want, text)
		}
	}
	// The destination MAC is the one the VM would use: the gateway's off
	// the subnet, the router port's for its own address, what a router on
	// the bridge learned for a neighbor, broadcast only when unknown.
	lease, err := e.cli.Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	learnedMAC := packet.MAC{2, 0, 0, 0, 0, 0x0c}
	if err := nsdb.New(e.cli).PutLearnedNeighbor(context.Background(),
		nsdb.LearnedNeighbor{Host: h0, RouterID: r, IP: netip.MustParseAddr("10.0.1.12"), MAC: learnedMAC, At: time.Now()}, lease.ID); err != nil {
		t.Fatal(err)
	}
	// A DNAT address on the router, on vm1's subnet: the bridge answers
	// ARP for it with the router port's MAC, and the trace asks the same.
	ch := e.mustCreate("/chains", map[string]any{"name": "nat-in"})
	e.mustCreate("/chains/"+ch+"/rules", map[string]any{"dst": "10.0.1.50/32", "type": "dnat", "flow_action": "accept",
		"targets": []string{"10.0.2.12"}})
	if st, obj, _ := e.do("PUT", "/routers/"+r, map[string]any{"inbound_filter_id": ch}); st != 200 {
		t.Fatalf("router infilter: %d %v", st, obj)
	}
	gw := routerPortMAC(t, e, r, "10.0.1.1")
	for _, c := range []struct{ dst, mac string }{
		{"10.0.2.12", gw},                  // off the subnet: the gateway
		{"10.0.1.1", gw},                   // the router port itself
		{"10.0.1.12", learnedMAC.String()}, // learned by the router
		{"10.0.1.50", gw},                  // the router's NAT address: ARP answered by the bridge
		{"10.0.1.99", "ff:ff:ff:ff:ff:ff"}, // nobody knows it: the VM would ARP
	} {
		st, obj, _ := e.do("POST", "/trace", map[string]any{"in_port_id": vm1, "src": "10.0.1.11", "dst": c.dst, "proto": "udp", "dst_port": 53})
		if st != 200 {
			t.Fatalf("trace to %s: %d %v", c.dst, st, obj)
		}
		if pkt, _ := obj["packet"].(string); !strings.Contains(pkt, "> "+c.mac+" ") {
			t.Errorf("trace to %s: packet %q, want destination MAC %s", c.dst, pkt, c.mac)
		}
	}
	// Unknown port and bad fields are 400 naming the field.
	if st, obj, _ := e.do("POST", "/trace", map[string]any{"in_port_id": "nope", "src": "10.0.1.11", "dst": "10.0.2.12"}); st != 400 || obj["error"].(map[string]any)["field"] != "in_port_id" {
		t.Errorf("unknown in-port: %d %v", st, obj)
	}
	if st, obj, _ := e.do("POST", "/trace", map[string]any{"in_port_id": vm1, "src": "10.0.1.11", "dst": "10.0.2.12", "proto": "sctpx"}); st != 400 || obj["error"].(map[string]any)["field"] != "proto" {
		t.Errorf("bad proto: %d %v", st, obj)
	}
}

func TestDatapathStatus(t *testing.T) {
	e := newEnv(t)
	h := e.mustCreate("/hosts", map[string]any{"name": "hv0"})
	if st, _, _ := e.do("GET", "/hosts/"+h+"/datapath", nil); st != 404 {
		t.Fatalf("no agent: %d", st)
	}
	b, _ := json.Marshal(agentstatus.Datapath{HostID: h, Datapath: "userspace", Flows: 3, Hits: 10})
	if _, err := e.cli.Put(context.Background(), nsdb.DatapathStatusKey(h), string(b)); err != nil {
		t.Fatal(err)
	}
	st, obj, _ := e.do("GET", "/hosts/"+h+"/datapath", nil)
	if st != 200 || obj["flows"] != 3.0 || obj["datapath"] != "userspace" {
		t.Fatalf("status: %d %v", st, obj)
	}
}

// routerPortMAC is the MAC of router r's port with address addr.
func routerPortMAC(t *testing.T, e *env, r, addr string) string {
	t.Helper()
	st, _, list := e.do("GET", "/routers/"+r+"/ports", nil)
	if st != 200 {
		t.Fatalf("list router ports: %d", st)
	}
	for _, x := range list {
		if p, _ := x.(map[string]any); p["address"] == addr {
			return p["mac"].(string)
		}
	}
	t.Fatalf("router %s has no port %s: %v", r, addr, list)
	return ""
}
