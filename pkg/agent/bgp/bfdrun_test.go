package bgp

import (
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/agent/bgp/bfd"
)

// Two runners over loopback, as two neighbours: the sessions come up,
// one side's death is seen within the detection time, its return brings
// the session up again.
func TestBFDRunner(t *testing.T) {
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	var mu sync.Mutex
	events := map[netip.Addr][]bfd.State{}
	record := func(peer netip.Addr, _, cur bfd.State) {
		mu.Lock()
		events[peer] = append(events[peer], cur)
		mu.Unlock()
	}
	log := slog.New(slog.DiscardHandler)
	ra, err := startBFD(a, "", log, record)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.stop()
	rb, err := startBFD(b, "", log, record)
	if err != nil {
		t.Fatal(err)
	}
	cfg := bfd.Config{Interval: 50 * time.Millisecond, Multiplier: 3}
	if err := ra.set(b, cfg); err != nil {
		t.Fatal(err)
	}
	if err := rb.set(a, cfg); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, d time.Duration, cond func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !cond() {
			if time.Since(start) > d {
				t.Fatalf("%s: not within %s", what, d)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return time.Since(start)
	}
	wait("both up", 3*time.Second, func() bool { return ra.state(b) == bfd.Up && rb.state(a) == bfd.Up })
	// b dies without a word (no AdminDown): a sees it in 150 ms.
	rb.cancel()
	rb.rx.Close()
	rb.wg.Wait()
	took := wait("a sees b dead", time.Second, func() bool { return ra.state(b) == bfd.Down })
	if took < 100*time.Millisecond {
		t.Errorf("b declared dead after %s, before its detection time", took)
	}
	t.Logf("dead neighbour detected in %s (50 ms × 3)", took)
	for _, p := range rb.peers {
		p.tx.Close()
	}
	// b returns.
	rb, err = startBFD(b, "", log, record)
	if err != nil {
		t.Fatal(err)
	}
	defer rb.stop()
	if err := rb.set(a, cfg); err != nil {
		t.Fatal(err)
	}
	wait("up again", 3*time.Second, func() bool { return ra.state(b) == bfd.Up && rb.state(a) == bfd.Up })
	// An orderly end (AdminDown) takes a's session down at once.
	rb.remove(a)
	wait("a sees b's admin down", 500*time.Millisecond, func() bool { return ra.state(b) == bfd.Down })
	mu.Lock()
	defer mu.Unlock()
	if n := len(events[b]); n < 4 {
		t.Errorf("a reported %d changes of b's session: %v", n, events[b])
	}
}
