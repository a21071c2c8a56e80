package native_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/sim"
)

// The router's translations are the merge of what live hosts published,
// sorted, without other routers' records or dead hosts'; an unknown router
// is 404.
func TestNATTranslations(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r0 := e.mustCreate("/routers", map[string]any{"name": "router0"})
	r1 := e.mustCreate("/routers", map[string]any{"name": "router1"})
	h0 := e.mustCreate("/hosts", map[string]any{"name": "hv0"})
	h1 := e.mustCreate("/hosts", map[string]any{"name": "hv1"})
	dead := e.mustCreate("/hosts", map[string]any{"name": "hv2"})
	g, err := e.cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{h0, h1} {
		if err := e.store.SetHostAlive(ctx, h, g.ID); err != nil {
			t.Fatal(err)
		}
	}
	z0 := fmt.Sprintf("%016x", sim.ObjectTag(model.RouterKind, r0))
	z1 := fmt.Sprintf("%016x", sim.ObjectTag(model.RouterKind, r1))
	exp := time.Now().Add(100 * time.Second)
	rec := func(zone, ig string) agentstatus.NATTranslation {
		return agentstatus.NATTranslation{Zone: zone, Type: "snat", Protocol: "tcp", InsideGlobal: ig, InsideLocal: "172.16.20.100:40000",
			OutsideLocal: "192.0.2.80:80", OutsideGlobal: "192.0.2.80:80", State: "established", Expires: exp}
	}
	put := func(h string, recs ...agentstatus.NATTranslation) {
		if err := e.store.PutNATTranslations(ctx, h, g.ID, &agentstatus.NATTranslations{HostID: h, Translations: recs, Truncated: 1}); err != nil {
			t.Fatal(err)
		}
	}
	put(h0, rec(z0, "10.81.14.201:1030"), rec(z1, "10.99.0.1:1024"))
	put(h1, rec(z0, "10.81.14.201:1025"))
	put(dead, rec(z0, "10.81.14.201:1000")) // not alive: its record is stale

	st, obj, _ := e.do("GET", "/routers/"+r0+"/nat-translations", nil)
	if st != 200 {
		t.Fatalf("GET: %d %v", st, obj)
	}
	trs := obj["translations"].([]any)
	if len(trs) != 2 || obj["truncated"] != 2.0 || obj["router_id"] != r0 {
		t.Fatalf("got %v", obj)
	}
	first, second := trs[0].(map[string]any), trs[1].(map[string]any)
	if first["inside_global"] != "10.81.14.201:1025" || first["host_id"] != h1 || second["host_id"] != h0 || first["router_id"] != r0 {
		t.Fatalf("not merged and sorted: %v", trs)
	}
	if ttl := first["ttl_seconds"].(float64); ttl < 1 || ttl > 100 {
		t.Fatalf("ttl_seconds %v, want the lifetime left (<= 100)", ttl)
	}
	if st, obj, _ := e.do("GET", "/routers/"+r1+"/nat-translations", nil); st != 200 || len(obj["translations"].([]any)) != 1 {
		t.Fatalf("router1: %d %v", st, obj)
	}
	if st, _, _ := e.do("GET", "/routers/"+h0+"/nat-translations", nil); st != 404 {
		t.Fatalf("a host's id as a router: %d, want 404", st)
	}
	if st, _, _ := e.do("GET", "/routers/nope/nat-translations", nil); st != 404 {
		t.Fatalf("bad router id: %d, want 404", st)
	}
}
