package native_test

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// BGP peers and networks are ordinary kinds; a peer's session state and
// the routes the peers announced come from what the gateways publish.
func TestBGP(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := e.mustCreate("/routers", map[string]any{"name": "edge"})
	host := e.mustCreate("/hosts", map[string]any{"name": "gw1"})
	up := e.mustCreate("/ports", map[string]any{"router_id": r, "address": "198.51.100.2", "network": "198.51.100.0/30",
		"host_id": host, "interface_name": "eth1"})
	if st, obj, _ := e.do("POST", "/routers/"+r+"/bgp-peers", map[string]any{"asn": 65001, "address": "198.51.100.1"}); st != 400 || obj["error"].(map[string]any)["field"] != "router_id" {
		t.Fatalf("peer of a router without an ASN: %d %v", st, obj)
	}
	if st, obj, _ := e.do("POST", "/routers/7f1c1a3e-0000-4000-8000-000000000000/bgp-peers", map[string]any{"asn": 65001, "address": "198.51.100.1"}); st != 404 {
		t.Fatalf("peer of a router that does not exist: %d %v, want 404", st, obj)
	}
	if st, obj, _ := e.do("PATCH", "/routers/"+r, map[string]any{"asn": 64512}); st != 200 {
		t.Fatalf("set asn: %d %v", st, obj)
	}
	peer := e.mustCreate("/routers/"+r+"/bgp-peers", map[string]any{"asn": 65001, "address": "198.51.100.1"})
	e.mustCreate("/routers/"+r+"/bgp-networks", map[string]any{"network": "203.0.113.0/24"})
	for _, c := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"asn": 65001, "address": "198.51.100.1"}, "address"},
		{map[string]any{"asn": 65002, "address": "192.0.2.1"}, "port_id"},
		{map[string]any{"asn": 65002, "address": "198.51.100.1", "bfd_interval": 1}, "bfd_interval"},
		{map[string]any{"asn": 65002, "address": "198.51.100.3", "status": "established"}, "status"},
		{map[string]any{"asn": 65002, "address": "198.51.100.3", "password": strings.Repeat("k", 81)}, "password"},
		{map[string]any{"asn": 65002, "address": "198.51.100.3", "password": "two words"}, "password"},
	} {
		st, obj, _ := e.do("POST", "/routers/"+r+"/bgp-peers", c.body)
		if st != 400 || obj["error"].(map[string]any)["field"] != c.field {
			t.Errorf("%v: %d %v, want 400 on %s", c.body, st, obj, c.field)
		}
	}
	// A password is taken, stored and never shown, nor filtered on.
	if st, obj, _ := e.do("PATCH", "/bgp-peers/"+peer, map[string]any{"password": "s3cret!"}); st != 200 || obj["password"] != nil {
		t.Fatalf("set password: %d %v", st, obj)
	}
	if o, err := e.store.Get(ctx, model.BGPPeerKind, peer); err != nil || o.(*model.BGPPeer).Password != "s3cret!" {
		t.Fatalf("stored peer: %+v %v", o, err)
	}
	if st, obj, _ := e.do("GET", "/bgp-peers?password=s3cret!", nil); st != 400 || obj["error"].(map[string]any)["field"] != "password" {
		t.Errorf("filter on the password: %d %v", st, obj)
	}
	_, obj, _ := e.do("GET", "/bgp-peers/"+peer, nil)
	if _, shown := obj["password"]; shown {
		t.Errorf("GET shows the password: %v", obj)
	}
	if obj["port_id"] != up || obj["bfd"] != "on" || obj["bfd_interval"] != 100.0 {
		t.Errorf("peer: %v", obj)
	}
	if s, _ := obj["status"].(string); s == "" || s == "established" {
		t.Errorf("no agent speaks yet, status %q", s)
	}
	lease, err := e.cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-42 * time.Second)
	if err := e.store.PutBGPPeerStatus(ctx, peer, nsdb.BGPPeerStatus{HostID: host, State: "established", Since: since, Received: 3, Sent: 1}, lease.ID); err != nil {
		t.Fatal(err)
	}
	_, _, list := e.do("GET", "/routers/"+r+"/bgp-peers", nil)
	if len(list) != 1 {
		t.Fatalf("peers: %v", list)
	}
	p := list[0].(map[string]any)
	if p["status"] != "established" || p["prefixes_received"] != 3.0 || p["prefixes_sent"] != 1.0 || p["speaker_host_id"] != host ||
		p["uptime"].(float64) < 41 || p["uptime"].(float64) > 60 {
		t.Errorf("peer with its session: %v", p)
	}

	// Learned routes show among the router's routes, marked learned, and
	// cannot be changed.
	def := netip.MustParsePrefix("0.0.0.0/0")
	if err := e.store.UpdateLearnedRoutes(ctx, []nsdb.LearnedRoute{{RouterID: r, PortID: up, Dst: def,
		Gateway: netip.MustParseAddr("198.51.100.1"), HostID: host, PeerID: peer}}, nil, lease.ID); err != nil {
		t.Fatal(err)
	}
	id := model.LearnedRouteID(up, def)
	_, _, routes := e.do("GET", "/routers/"+r+"/routes", nil)
	if len(routes) != 1 || routes[0].(map[string]any)["id"] != id || routes[0].(map[string]any)["learned"] != true {
		t.Fatalf("router's routes: %v", routes)
	}
	if _, _, routes := e.do("GET", "/routes?learned=true", nil); len(routes) != 1 {
		t.Errorf("routes filtered by learned: %v", routes)
	}
	if _, _, routes := e.do("GET", "/routes?port_id="+host, nil); len(routes) != 0 {
		t.Errorf("routes of another port: %v", routes)
	}
	if st, obj, _ := e.do("GET", "/routes/"+id, nil); st != 200 || obj["gateway"] != "198.51.100.1" {
		t.Errorf("get a learned route: %d %v", st, obj)
	}
	if st, _, _ := e.do("DELETE", "/routes/"+id, nil); st != http.StatusConflict {
		t.Errorf("delete a learned route: %d", st)
	}
	if st, _, _ := e.do("PATCH", "/routes/"+id, map[string]any{"weight": 5}); st != http.StatusConflict {
		t.Errorf("change a learned route: %d", st)
	}
	// The gateway dies: its routes and its word about the session go.
	if _, err := e.cli.Revoke(ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, routes := e.do("GET", "/routers/"+r+"/routes", nil); len(routes) != 0 {
		t.Errorf("routes after the gateway died: %v", routes)
	}
	if st, _, _ := e.do("GET", "/routes/"+id, nil); st != 404 {
		t.Errorf("a learned route after the gateway died: %d", st)
	}
	// Deleting the port takes its peers.
	if st, _, _ := e.do("DELETE", "/ports/"+up, nil); st != 204 {
		t.Fatalf("delete port: %d", st)
	}
	if st, _, _ := e.do("GET", "/bgp-peers/"+peer, nil); st != 404 {
		t.Errorf("peer after its port went: %d", st)
	}
}
