package native_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/api/native"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
)

type env struct {
	t     *testing.T
	url   string
	cli   *clientv3.Client
	store *nsdb.Store
}

func newEnv(t *testing.T) *env {
	t.Helper()
	cli := nsdbtest.Start(t)
	store := nsdb.New(cli)
	if err := store.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	native.New(store, nil).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{t: t, url: srv.URL + native.Prefix, cli: cli, store: store}
}

// do sends a request and returns the status and decoded JSON body.
func (e *env) do(method, path string, body any, hdr ...string) (int, map[string]any, []any) {
	e.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, _ := json.Marshal(b)
		rd = bytes.NewReader(buf)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var obj map[string]any
	var arr []any
	if len(raw) > 0 && raw[0] == '[' {
		_ = json.Unmarshal(raw, &arr)
	} else {
		_ = json.Unmarshal(raw, &obj)
	}
	return resp.StatusCode, obj, arr
}

// mustCreate posts and returns the new object's id.
func (e *env) mustCreate(path string, body any) string {
	e.t.Helper()
	st, obj, _ := e.do("POST", path, body)
	if st != http.StatusCreated {
		e.t.Fatalf("POST %s %v: status %d %v", path, body, st, obj)
	}
	return obj["id"].(string)
}

// rev is the etcd revision: unchanged means nothing was written.
func (e *env) rev() int64 {
	r, err := e.cli.Get(context.Background(), "/nagare/v1/schema-version")
	if err != nil {
		e.t.Fatal(err)
	}
	return r.Header.Revision
}

func TestCRUD(t *testing.T) {
	e := newEnv(t)
	id := e.mustCreate("/bridges", map[string]any{"name": "internal"})
	st, obj, _ := e.do("GET", "/bridges/"+id, nil)
	if st != 200 || obj["name"] != "internal" || obj["state"] != "up" || obj["revision"] == nil {
		t.Fatalf("GET: %d %v", st, obj)
	}
	st, obj, _ = e.do("PUT", "/bridges/"+id, map[string]any{"state": "down"})
	if st != 200 || obj["state"] != "down" || obj["name"] != "internal" {
		t.Fatalf("PUT keeps other fields: %d %v", st, obj)
	}
	e.mustCreate("/bridges", map[string]any{"name": "second"})
	_, _, list := e.do("GET", "/bridges", nil)
	if len(list) != 2 || list[0].(map[string]any)["name"] != "internal" {
		t.Fatalf("list not in creation order: %v", list)
	}
	_, _, list = e.do("GET", "/bridges?name=second", nil)
	if len(list) != 1 {
		t.Fatalf("filter: %v", list)
	}
	if st, _, _ := e.do("DELETE", "/bridges/"+id, nil); st != 204 {
		t.Fatalf("DELETE: %d", st)
	}
	if st, obj, _ := e.do("GET", "/bridges/"+id, nil); st != 404 || obj["error"] == nil {
		t.Fatalf("GET deleted: %d %v", st, obj)
	}
	if st, _, _ := e.do("DELETE", "/bridges/"+id, nil); st != 404 {
		t.Fatalf("DELETE twice: %d", st)
	}
}

func TestBadInputWritesNothing(t *testing.T) {
	e := newEnv(t)
	br := e.mustCreate("/bridges", map[string]any{"name": "b"})
	rt := e.mustCreate("/routers", map[string]any{"name": "r"})
	rp := e.mustCreate("/ports", map[string]any{"router_id": rt, "address": "10.0.0.1", "network": "10.0.0.0/24"})
	other := e.mustCreate("/routers", map[string]any{"name": "other"})
	op := e.mustCreate("/ports", map[string]any{"router_id": other, "address": "10.1.0.1", "network": "10.1.0.0/24"})
	e.mustCreate("/tunnel-zones", map[string]any{"name": "tz"})
	missing := "aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"
	cases := []struct {
		method, path string
		body         any
		status       int
		field        string
	}{
		{"POST", "/bridges", `{"name":`, 400, "body"},
		{"POST", "/bridges", `{"name":"x","color":"red"}`, 400, "color"},
		{"POST", "/bridges", `{"inbound_filter_id":"nope"}`, 400, "inbound_filter_id"},
		{"POST", "/bridges", `{"inbound_filter_id":"` + missing + `"}`, 400, "inbound_filter_id"},
		{"POST", "/bridges", `{"state":"sideways"}`, 400, "state"},
		{"POST", "/ports", `{"bridge_id":"` + br + `","vlan":5000}`, 400, "vlan"},
		{"POST", "/ports", `{"bridge_id":"` + missing + `"}`, 400, "bridge_id"},
		{"POST", "/ports", `{"router_id":"` + rt + `","address":"10.0.0.300","network":"10.0.0.0/24"}`, 400, "address"},
		{"POST", "/ports", `{"router_id":"` + rt + `","address":"10.0.0.3","network":"10.0.0.0/33"}`, 400, "network"},
		{"POST", "/ports", `{"router_id":"` + rt + `","mac":"00:11:22:33:44"}`, 400, "mac"},
		{"POST", "/routes", `{"router_id":"` + rt + `","dst":"10.2.0.0/16","port_id":"` + op + `"}`, 400, "port_id"},
		{"POST", "/routes", `{"router_id":"` + rt + `","dst":"10.2.0.0/16","port_id":"` + missing + `"}`, 400, "port_id"},
		{"POST", "/tunnel-zones", `{"name":"tz"}`, 400, "name"},
		{"POST", "/tunnel-zones", `{"name":"tz2","type":"ipip"}`, 400, "type"},
		{"POST", "/routers/" + missing + "/ports", `{}`, 404, ""},
		{"POST", "/routers/" + rt + "/ports", `{"router_id":"` + other + `"}`, 400, "router_id"},
		{"GET", "/bridges/" + missing, nil, 404, ""},
		{"GET", "/bridges?colour=red", nil, 400, "colour"},
		{"PUT", "/bridges/" + missing, `{"name":"x"}`, 404, ""},
		{"PUT", "/bridges/" + br, `{"id":"` + missing + `"}`, 400, "id"},
		{"PUT", "/ports/" + rp, `{"router_id":"` + other + `"}`, 400, "router_id"},
		{"PUT", "/ports/" + rp, `{"tunnel_key":5}`, 400, "tunnel_key"},
		{"PUT", "/bridges/" + br, `{"name":"x","revision":1}`, 409, ""},
		{"PUT", "/bridges/" + br, `{"name":"x"}`, 409, "" /* If-Match below */},
		{"DELETE", "/routers/" + rt, nil, 409, ""},
		{"GET", "/nothing-here", nil, 404, ""},
	}
	for i, c := range cases {
		before := e.rev()
		var hdr []string
		if i == len(cases)-3 {
			hdr = []string{"If-Match", "2"}
		}
		st, obj, _ := e.do(c.method, c.path, c.body, hdr...)
		if st != c.status {
			t.Errorf("%s %s %v: status %d, want %d (%v)", c.method, c.path, c.body, st, c.status, obj)
			continue
		}
		errObj, _ := obj["error"].(map[string]any)
		if errObj == nil || errObj["message"] == "" {
			t.Errorf("%s %s: no error document: %v", c.method, c.path, obj)
			continue
		}
		if c.field != "" && errObj["field"] != c.field {
			t.Errorf("%s %s %v: error names field %v, want %s (%v)", c.method, c.path, c.body, errObj["field"], c.field, errObj["message"])
		}
		if after := e.rev(); after != before {
			t.Errorf("%s %s %v: rejected request wrote to the NSDB (revision %d → %d)", c.method, c.path, c.body, before, after)
		}
	}
}

func TestPortsLinksAndIntegrity(t *testing.T) {
	e := newEnv(t)
	br := e.mustCreate("/bridges", map[string]any{"name": "internal"})
	bp := e.mustCreate("/bridges/"+br+"/ports", map[string]any{})
	rt := e.mustCreate("/routers", map[string]any{"name": "MidoNet Provider Router"})
	rp := e.mustCreate("/routers/"+rt+"/ports", map[string]any{"address": "10.0.0.1", "network": "10.0.0.0/24"})
	_, port, _ := e.do("GET", "/ports/"+rp, nil)
	if port["mac"] == nil || port["tunnel_key"] == nil {
		t.Fatalf("router port lacks server-assigned mac/tunnel key: %v", port)
	}
	if st, obj, _ := e.do("PUT", "/ports/"+bp+"/link", map[string]any{"peer_id": rp}); st != 200 || obj["peer_id"] != rp {
		t.Fatalf("link: %d %v", st, obj)
	}
	if _, obj, _ := e.do("GET", "/ports/"+rp, nil); obj["peer_id"] != bp {
		t.Fatalf("link not symmetric: %v", obj)
	}
	// A third port cannot steal a linked peer.
	rt2 := e.mustCreate("/routers", map[string]any{"name": "r2"})
	rp2 := e.mustCreate("/routers/"+rt2+"/ports", map[string]any{"address": "10.9.0.1", "network": "10.9.0.0/24"})
	if st, _, _ := e.do("PUT", "/ports/"+rp2+"/link", map[string]any{"peer_id": bp}); st != 409 {
		t.Fatalf("stealing a linked peer: %d", st)
	}
	route := e.mustCreate("/routers/"+rt+"/routes", map[string]any{"src": "0.0.0.0/0", "dst": "10.0.0.0/24", "type": "normal", "port_id": rp})
	e.mustCreate("/routers/"+rt+"/routes", map[string]any{"dst": "2001:db8::/64", "type": "blackhole"})
	_, _, routes := e.do("GET", "/routers/"+rt+"/routes", nil)
	if len(routes) != 2 {
		t.Fatalf("routes of router: %v", routes)
	}
	if st, _, _ := e.do("DELETE", "/bridges/"+br, nil); st != 409 {
		t.Fatalf("deleting a bridge with ports: %d", st)
	}
	// Deleting the router port unlinks its peer and takes its routes along.
	if st, _, _ := e.do("DELETE", "/ports/"+rp, nil); st != 204 {
		t.Fatalf("delete port: %d", st)
	}
	if _, obj, _ := e.do("GET", "/ports/"+bp, nil); obj["peer_id"] != nil {
		t.Fatalf("peer not unlinked: %v", obj)
	}
	if st, _, _ := e.do("GET", "/routes/"+route, nil); st != 404 {
		t.Fatalf("route via deleted port survived: %d", st)
	}
	if st, _, _ := e.do("DELETE", "/ports/"+bp, nil); st != 204 {
		t.Fatalf("delete bridge port: %d", st)
	}
	if st, _, _ := e.do("DELETE", "/bridges/"+br, nil); st != 204 {
		t.Fatalf("delete empty bridge: %d", st)
	}
}

func TestHostsBindingsAndTunnelZones(t *testing.T) {
	e := newEnv(t)
	h0 := e.mustCreate("/hosts", map[string]any{"name": "carlsberg", "addresses": []string{"192.168.100.201"}})
	h1 := e.mustCreate("/hosts", map[string]any{"name": "tuborg"})
	tz := e.mustCreate("/tunnel-zones", map[string]any{"name": "vxlan-tz", "type": "vxlan"})
	e.mustCreate("/tunnel-zones/"+tz+"/tunnel-zone-members", map[string]any{"host_id": h0, "address": "192.168.100.201"})
	e.mustCreate("/tunnel-zones/"+tz+"/tunnel-zone-members", map[string]any{"host_id": h1, "address": "fd00::2"})
	if st, obj, _ := e.do("POST", "/tunnel-zones/"+tz+"/tunnel-zone-members", map[string]any{"host_id": h0, "address": "192.168.100.9"}); st != 400 || obj["error"].(map[string]any)["field"] != "host_id" {
		t.Fatalf("host twice in a zone: %d %v", st, obj)
	}
	br := e.mustCreate("/bridges", map[string]any{"name": "b"})
	p0 := e.mustCreate("/bridges/"+br+"/ports", map[string]any{})
	p1 := e.mustCreate("/bridges/"+br+"/ports", map[string]any{})
	if st, obj, _ := e.do("POST", "/hosts/"+h0+"/bindings", map[string]any{"interface_name": "leftdp", "port_id": p0}); st != 201 {
		t.Fatalf("bind: %d %v", st, obj)
	}
	if st, _, _ := e.do("POST", "/hosts/"+h0+"/bindings", map[string]any{"interface_name": "leftdp", "port_id": p1}); st != 400 {
		t.Fatalf("interface bound twice on one host: %d", st)
	}
	if st, _, _ := e.do("POST", "/hosts/"+h1+"/bindings", map[string]any{"interface_name": "leftdp", "port_id": p1}); st != 201 {
		t.Fatalf("same interface name on another host: %d", st)
	}
	if st, _, _ := e.do("POST", "/hosts/"+h1+"/bindings", map[string]any{"interface_name": "other", "port_id": p0}); st != 409 {
		t.Fatalf("rebinding a bound port elsewhere: %d", st)
	}
	_, _, bs := e.do("GET", "/hosts/"+h0+"/bindings", nil)
	if len(bs) != 1 || bs[0].(map[string]any)["port_id"] != p0 {
		t.Fatalf("bindings: %v", bs)
	}
	if st, _, _ := e.do("DELETE", "/hosts/"+h0+"/bindings/leftdp", nil); st != 204 {
		t.Fatalf("unbind: %d", st)
	}
	if st, _, _ := e.do("DELETE", "/hosts/"+h0+"/bindings/leftdp", nil); st != 404 {
		t.Fatalf("unbind twice: %d", st)
	}
	// Liveness is the agent's lease.
	if _, obj, _ := e.do("GET", "/hosts/"+h0, nil); obj["alive"] != false {
		t.Fatalf("host alive without a lease: %v", obj)
	}
	lease, err := e.cli.Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.SetHostAlive(context.Background(), h0, lease.ID); err != nil {
		t.Fatal(err)
	}
	if _, obj, _ := e.do("GET", "/hosts/"+h0, nil); obj["alive"] != true {
		t.Fatalf("host with a lease not alive: %v", obj)
	}
	if _, err := e.cli.Revoke(context.Background(), lease.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, hosts := e.do("GET", "/hosts", nil); hosts[0].(map[string]any)["alive"] != false {
		t.Fatalf("host alive after its lease was revoked: %v", hosts)
	}
	// Deleting a host removes its zone memberships and its bindings.
	if st, _, _ := e.do("DELETE", "/hosts/"+h1, nil); st != 204 {
		t.Fatalf("delete host: %d", st)
	}
	if _, _, ms := e.do("GET", "/tunnel-zones/"+tz+"/tunnel-zone-members", nil); len(ms) != 1 {
		t.Fatalf("members after host delete: %v", ms)
	}
	if _, obj, _ := e.do("GET", "/ports/"+p1, nil); obj["host_id"] != nil {
		t.Fatalf("binding of deleted host survived: %v", obj)
	}
}

func TestRulePositions(t *testing.T) {
	e := newEnv(t)
	ch := e.mustCreate("/chains", map[string]any{"name": "nat-in"})
	r1 := e.mustCreate("/chains/"+ch+"/rules", map[string]any{"type": "accept"})
	r2 := e.mustCreate("/chains/"+ch+"/rules", map[string]any{"type": "drop"})
	r0 := e.mustCreate("/chains/"+ch+"/rules", map[string]any{"type": "dnat", "dst": "10.81.14.201/32", "proto": 6, "dst_port": "80", "targets": []string{"172.16.20.100:80"}, "position": 1})
	want := map[string]float64{r0: 1, r1: 2, r2: 3}
	_, _, rules := e.do("GET", "/chains/"+ch+"/rules", nil)
	for _, r := range rules {
		m := r.(map[string]any)
		if m["position"] != want[m["id"].(string)] {
			t.Errorf("rule %s at %v, want %v", m["id"], m["position"], want[m["id"].(string)])
		}
	}
	if st, _, _ := e.do("DELETE", "/rules/"+r0, nil); st != 204 {
		t.Fatal("delete rule")
	}
	if _, obj, _ := e.do("GET", "/rules/"+r2, nil); obj["position"] != 2.0 {
		t.Fatalf("position after delete: %v", obj["position"])
	}
	// A chain in use as a filter cannot be deleted.
	e.mustCreate("/routers", map[string]any{"name": "r", "inbound_filter_id": ch})
	if st, _, _ := e.do("DELETE", "/chains/"+ch, nil); st != 409 {
		t.Fatalf("deleting a chain in use: %d", st)
	}
}

// Two clients update the same object from the same revision: exactly one
// wins, the other gets 409, and the winner's write is what is stored.
func TestConcurrentWriters(t *testing.T) {
	e := newEnv(t)
	id := e.mustCreate("/bridges", map[string]any{"name": "start"})
	for round := 0; round < 10; round++ {
		_, obj, _ := e.do("GET", "/bridges/"+id, nil)
		rev := obj["revision"]
		var wg sync.WaitGroup
		status := make([]int, 2)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				status[i], _, _ = e.do("PUT", "/bridges/"+id, map[string]any{"name": fmt.Sprintf("writer%d-%d", i, round), "revision": rev})
			}()
		}
		wg.Wait()
		wins := 0
		winner := -1
		for i, s := range status {
			switch s {
			case 200:
				wins++
				winner = i
			case 409:
			default:
				t.Fatalf("round %d: status %d", round, s)
			}
		}
		if wins != 1 {
			t.Fatalf("round %d: %d writers won (%v)", round, wins, status)
		}
		if _, obj, _ := e.do("GET", "/bridges/"+id, nil); obj["name"] != fmt.Sprintf("writer%d-%d", winner, round) {
			t.Fatalf("round %d: stored %v, winner was %d", round, obj["name"], winner)
		}
	}
}

func TestIPv6Everywhere(t *testing.T) {
	e := newEnv(t)
	rt := e.mustCreate("/routers", map[string]any{"name": "r6"})
	p := e.mustCreate("/routers/"+rt+"/ports", map[string]any{"address": "2001:db8:1::1", "network": "2001:db8:1::/64"})
	e.mustCreate("/routers/"+rt+"/routes", map[string]any{"dst": "2001:db8:2::/64", "gateway": "2001:db8:1::fe", "port_id": p})
	ch := e.mustCreate("/chains", map[string]any{})
	e.mustCreate("/chains/"+ch+"/rules", map[string]any{"type": "drop", "src": "2001:db8::/32", "proto": 58})
	ipg := e.mustCreate("/ip-address-groups", map[string]any{"name": "g"})
	e.mustCreate("/ip-address-groups/"+ipg+"/ip-address-group-addresses", map[string]any{"address": "2001:db8::5"})
}

func TestOpenAPI(t *testing.T) {
	e := newEnv(t)
	st, doc, _ := e.do("GET", "/openapi.json", nil)
	if st != 200 || doc["openapi"] != "3.1.0" {
		t.Fatalf("openapi: %d %v", st, doc["openapi"])
	}
	paths := doc["paths"].(map[string]any)
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	for _, k := range model.Kinds() {
		if paths["/api/v1/"+k.Plural] == nil || paths["/api/v1/"+k.Plural+"/{id}"] == nil {
			t.Errorf("openapi lacks paths of %s", k.Plural)
		}
	}
	port := schemas["Port"].(map[string]any)["properties"].(map[string]any)
	if port["peer_id"].(map[string]any)["x-nagare-ref"] != "port" || port["vlan"].(map[string]any)["maximum"] != 4094.0 {
		t.Errorf("Port schema incomplete: %v", port)
	}
	if paths["/api/v1/bridges/{pid}/ports"] == nil || paths["/api/v1/hosts/{id}/bindings"] == nil {
		t.Error("openapi lacks nested or binding paths")
	}
}

// A member's status is the health monitors' state key, like a host's
// liveness is its agent's lease; without a monitor on the pool it is
// no_monitor.
func TestPoolMemberStatus(t *testing.T) {
	e := newEnv(t)
	lb := e.mustCreate("/load-balancers", map[string]any{"name": "lb"})
	pool := e.mustCreate("/pools", map[string]any{"load_balancer_id": lb})
	m := e.mustCreate("/pool-members", map[string]any{"pool_id": pool, "address": "10.0.0.7", "protocol_port": 80})
	status := func() (string, string) {
		t.Helper()
		_, obj, _ := e.do("GET", "/pool-members/"+m, nil)
		_, _, list := e.do("GET", "/pool-members", nil)
		if len(list) != 1 {
			t.Fatalf("list: %v", list)
		}
		s1, _ := obj["status"].(string)
		s2, _ := list[0].(map[string]any)["status"].(string)
		return s1, s2
	}
	if s, l := status(); s != "no_monitor" || l != "no_monitor" {
		t.Fatalf("no monitor: show %q list %q", s, l)
	}
	hm := e.mustCreate("/health-monitors", map[string]any{"name": "hm"})
	if st, obj, _ := e.do("PATCH", "/pools/"+pool, map[string]any{"health_monitor_id": hm}); st != 200 {
		t.Fatalf("attach monitor: %d %v", st, obj)
	}
	if s, l := status(); s != "" || l != "" {
		t.Fatalf("monitored, not checked yet: show %q list %q", s, l)
	}
	lease, err := e.cli.Grant(context.Background(), 60)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.PutMemberStatus(context.Background(), "h1", m, "down", lease.ID); err != nil {
		t.Fatal(err)
	}
	if s, l := status(); s != "down" || l != "down" {
		t.Fatalf("down: show %q list %q", s, l)
	}
	if st, obj, _ := e.do("PATCH", "/pool-members/"+m, map[string]any{"status": "up"}); st != 400 {
		t.Fatalf("writing the derived status: %d %v", st, obj)
	}
	if _, err := e.cli.Revoke(context.Background(), lease.ID); err != nil {
		t.Fatal(err)
	}
	if s, _ := status(); s != "" {
		t.Fatalf("status after the monitor's lease ended: %q", s)
	}
}
