package native_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/nsdb"
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
