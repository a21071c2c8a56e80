package reach

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/nsdb"
)

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
)

// applied records what Reach passed on, as the mirror would apply it.
type applied struct {
	mu  sync.Mutex
	got []nsdb.Liveness
}

func (a *applied) Apply(l nsdb.Liveness) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.got = append(a.got, l)
	return nil
}

// alive is host's liveness as the applied sequence leaves it.
func (a *applied) alive(host string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	up := false
	for _, l := range a.got {
		if v, ok := l.Alive[host]; ok {
			up = v
		} else if l.Reset {
			up = false
		}
	}
	return up
}

func (a *applied) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.got)
}

// probeHandler hands a's probes to Reach, as the agent's handler does.
type probeHandler struct{ r *Reach }

func (probeHandler) Miss(*datapath.Upcall) {}
func (h probeHandler) Probe(from netip.Addr, payload []byte) {
	h.r.Echo(from, payload)
}

// node is an in-memory datapath on the hub, running until stop.
type node struct {
	dp   *memory.Datapath
	stop func()
}

func newNode(t *testing.T, hub *memory.Hub, local, peer netip.Addr, h datapath.MissHandler) *node {
	t.Helper()
	dp := memory.New(datapath.Config{}, memory.NewHost(hub))
	if err := dp.SetTunnels(datapath.TunnelConfig{LocalIP: local, VXLAN: true, Peers: []netip.Addr{peer}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := dp.Run(ctx, h); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	n := &node{dp: dp, stop: func() { once.Do(func() { cancel(); <-done }) }}
	t.Cleanup(n.stop)
	return n
}

// setup is host a, whose Reach judges host b, b's datapath answering
// until its node stops.
func setup(t *testing.T, revoked ...string) (*Reach, *applied, *node) {
	t.Helper()
	hub := memory.NewHub()
	out := &applied{}
	h := &probeHandler{}
	a := newNode(t, hub, addrA, addrB, h)
	r, err := New(Config{HostID: "a", Datapath: a.dp, Apply: out.Apply, Multiplier: 3,
		Revoked: func(_ context.Context, host string) (bool, error) { return slices.Contains(revoked, host), nil },
		Addresses: func(host string) []netip.Addr {
			if host == "b" {
				return []netip.Addr{addrB}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	h.r = r
	b := newNode(t, hub, addrB, addrA, probeHandler{})
	if err := r.Apply(nsdb.Liveness{Reset: true, Alive: map[string]bool{"a": true, "b": true}}); err != nil {
		t.Fatal(err)
	}
	return r, out, b
}

// ticks runs n rounds, giving the answers time to come.
func ticks(t *testing.T, r *Reach, n int) {
	t.Helper()
	for range n {
		if err := r.tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A host whose lease ends but whose datapath answers stays reachable for
// as long as it answers, and is not cut when its lease comes back.
func TestLeaseEndedDatapathAnswers(t *testing.T) {
	r, out, _ := setup(t)
	if err := r.Apply(nsdb.Liveness{Alive: map[string]bool{"b": false}}); err != nil {
		t.Fatal(err)
	}
	ticks(t, r, 10)
	if !out.alive("b") {
		t.Fatal("b cut although its datapath answers")
	}
	if s := r.Suspects(); !s["b"] {
		t.Fatalf("suspects %v, want b answering", s)
	}
	n := out.count()
	if err := r.Apply(nsdb.Liveness{Alive: map[string]bool{"b": true}}); err != nil {
		t.Fatal(err)
	}
	ticks(t, r, 5)
	if !out.alive("b") || len(r.Suspects()) != 0 || out.count() != n+1 {
		t.Fatalf("after the lease came back: alive %v, suspects %v, %d applied (want %d)", out.alive("b"), r.Suspects(), out.count(), n+1)
	}
}

// A host whose lease ends and whose datapath is gone is cut once the
// last Multiplier rounds went unanswered; one whose datapath dies later
// is cut as many rounds after that.
func TestLeaseEndedDatapathSilent(t *testing.T) {
	for _, answerFirst := range []bool{false, true} {
		r, out, b := setup(t)
		if !answerFirst {
			b.stop()
		}
		if err := r.Apply(nsdb.Liveness{Alive: map[string]bool{"b": false}}); err != nil {
			t.Fatal(err)
		}
		if answerFirst {
			ticks(t, r, 5)
			if !r.Suspects()["b"] {
				t.Fatal("b never answered")
			}
			b.stop()
		}
		// Three rounds unanswered are judged at the fourth.
		ticks(t, r, 3)
		if !out.alive("b") {
			t.Fatalf("answered first %v: b cut after 3 rounds, want after 3 unanswered rounds are judged", answerFirst)
		}
		ticks(t, r, 2)
		if out.alive("b") {
			t.Fatalf("answered first %v: b still reachable after its datapath stopped answering", answerFirst)
		}
		if len(r.Suspects()) != 0 {
			t.Errorf("a cut host is still probed: %v", r.Suspects())
		}
	}
}

// What the first liveness says is taken as it is; a relist that misses a
// host alive before probes it; this host itself is never probed; answers
// to rounds not sent count for nothing.
func TestLivenessEdges(t *testing.T) {
	hub := memory.NewHub()
	out := &applied{}
	sent := 0
	a := newNode(t, hub, addrA, addrB, probeHandler{})
	r, err := New(Config{HostID: "a", Datapath: a.dp, Apply: out.Apply,
		Addresses: func(string) []netip.Addr { sent++; return []netip.Addr{addrB} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(nsdb.Liveness{Reset: true, Alive: map[string]bool{"a": true}}); err != nil {
		t.Fatal(err)
	}
	ticks(t, r, 1)
	if out.alive("b") || sent != 0 {
		t.Fatalf("first liveness: b alive %v, probed %d times", out.alive("b"), sent)
	}
	if err := r.Apply(nsdb.Liveness{Alive: map[string]bool{"b": true, "c": true}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(nsdb.Liveness{Reset: true, Alive: map[string]bool{"a": true, "b": true}}); err != nil {
		t.Fatal(err)
	}
	if !out.alive("c") || r.Suspects()["c"] || len(r.Suspects()) != 1 {
		t.Fatalf("relist without c: alive %v, suspects %v", out.alive("c"), r.Suspects())
	}
	if !r.Echo(addrB, []byte{1, 4, 0, 0, 0, 0, 0, 9}) || r.Suspects()["c"] {
		t.Error("an answer to a round never sent counted")
	}
	if r.Echo(addrB, []byte{1, 2, 0, 0, 0, 0, 0, 0}) {
		t.Error("a gateway's report taken for an echo reply")
	}
	if err := r.Apply(nsdb.Liveness{Alive: map[string]bool{"a": false}}); err != nil {
		t.Fatal(err)
	}
	if out.alive("a") || r.Suspects()["a"] {
		t.Errorf("this host's own lease: alive %v, probed %v", out.alive("a"), r.Suspects())
	}
}

// A revoked host is cut at the first round after its lease ends, though
// its datapath answers: it is not trusted to stop.
func TestRevokedCutAtOnce(t *testing.T) {
	r, out, _ := setup(t, "b")
	if err := r.Apply(nsdb.Liveness{Alive: map[string]bool{"b": false}}); err != nil {
		t.Fatal(err)
	}
	if !out.alive("b") {
		t.Fatal("b cut before the round that asks")
	}
	ticks(t, r, 1)
	if out.alive("b") || len(r.Suspects()) != 0 {
		t.Fatalf("revoked b: alive %v, suspects %v", out.alive("b"), r.Suspects())
	}
}
