package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseCodes(t *testing.T) {
	for _, c := range []struct {
		in       string
		match    []int
		mismatch []int
		bad      bool
	}{
		{in: "", match: []int{200}, mismatch: []int{201, 500}},
		{in: "200", match: []int{200}, mismatch: []int{199, 201}},
		{in: "200,202", match: []int{200, 202}, mismatch: []int{201, 203}},
		{in: "200-204", match: []int{200, 202, 204}, mismatch: []int{199, 205}},
		{in: " 200-204 , 301", match: []int{204, 301}, mismatch: []int{300, 302}},
		{in: "2OO", bad: true},
		{in: "204-200", bad: true},
		{in: "99", bad: true},
		{in: "600", bad: true},
		{in: "200,", bad: true},
		{in: "200-", bad: true},
	} {
		codes, err := ParseCodes(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("ParseCodes(%q) = %v, want an error", c.in, codes)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCodes(%q): %v", c.in, err)
			continue
		}
		for _, m := range c.match {
			if !codes.Match(m) {
				t.Errorf("ParseCodes(%q) does not match %d", c.in, m)
			}
		}
		for _, m := range c.mismatch {
			if codes.Match(m) {
				t.Errorf("ParseCodes(%q) matches %d", c.in, m)
			}
		}
	}
}

func TestStateMachine(t *testing.T) {
	for _, c := range []struct {
		name       string
		rise, fall int
		results    string // 'o' ok, 'x' failed
		want       string // status after each result: u up, d down, ? unknown
	}{
		{"first success is up", 3, 1, "o", "u"},
		{"first failure is down with fall 1", 3, 1, "x", "d"},
		{"unknown until fall failures", 3, 2, "xxo", "?dd"},
		{"down after fall consecutive failures", 3, 2, "oxoxxo", "uuuudd"},
		{"up after rise consecutive successes", 3, 1, "oxooxooo", "uddddddu"},
		{"a failure resets the rise", 2, 1, "xoxoo", "ddddu"},
		{"values below 1 count as 1", 0, 0, "oxo", "udu"},
	} {
		var s State
		got := ""
		for _, r := range c.results {
			st, _ := s.Observe(r == 'o', c.rise, c.fall)
			got += map[Status]string{Unknown: "?", Up: "u", Down: "d"}[st]
		}
		if got != c.want {
			t.Errorf("%s: results %s (rise %d, fall %d) gave %s, want %s", c.name, c.results, c.rise, c.fall, got, c.want)
		}
	}
}

func TestStateMachineReportsChanges(t *testing.T) {
	var s State
	var changes []Status
	for _, ok := range []bool{true, true, false, false, true, true} {
		if st, changed := s.Observe(ok, 2, 2); changed {
			changes = append(changes, st)
		}
	}
	want := []Status{Up, Down, Up}
	if len(changes) != len(want) || changes[0] != want[0] || changes[1] != want[1] || changes[2] != want[2] {
		t.Fatalf("changes %v, want %v", changes, want)
	}
}

var plainDial DialFunc = (&net.Dialer{}).DialContext

func addrPort(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}

// closedPort returns a loopback address nothing listens on any more.
func closedPort(t *testing.T) netip.AddrPort {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ap := addrPort(t, l.Addr())
	l.Close()
	return ap
}

func TestCheckTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	m := &Monitor{Type: "tcp", Timeout: 2 * time.Second}
	if err := Check(context.Background(), m, plainDial, addrPort(t, l.Addr())); err != nil {
		t.Errorf("check of a listening port failed: %v", err)
	}
	if err := Check(context.Background(), m, plainDial, closedPort(t)); err == nil {
		t.Errorf("check of a closed port passed")
	}
}

func TestCheckHTTP(t *testing.T) {
	var gotMethod atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotMethod.Store(r.Method)
		switch r.URL.Path {
		case "/ok":
			w.WriteHeader(200)
		case "/accepted":
			w.WriteHeader(202)
		case "/moved":
			http.Redirect(w, r, "/ok", http.StatusMovedPermanently)
		default:
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	ap := addrPort(t, srv.Listener.Addr())
	for _, c := range []struct {
		method, path, codes string
		pass                bool
	}{
		{"GET", "/ok", "200", true},
		{"GET", "/accepted", "200", false},
		{"GET", "/accepted", "200,202", true},
		{"HEAD", "/accepted", "200-204", true},
		{"GET", "/broken", "200-204", false},
		{"GET", "/broken", "500", true},
		{"GET", "/moved", "200", false}, // redirects are not followed
		{"GET", "/moved", "301", true},
		{"", "ok", "200", true}, // defaults: GET, a leading slash
	} {
		codes, err := ParseCodes(c.codes)
		if err != nil {
			t.Fatal(err)
		}
		m := &Monitor{Type: "http", Timeout: 2 * time.Second, HTTPMethod: c.method, URLPath: c.path, Codes: codes}
		err = Check(context.Background(), m, plainDial, ap)
		if (err == nil) != c.pass {
			t.Errorf("%s %s expecting %s: err %v, want pass=%v", c.method, c.path, c.codes, err, c.pass)
		}
		want := c.method
		if want == "" {
			want = "GET"
		}
		if got, _ := gotMethod.Load().(string); got != want {
			t.Errorf("%s %s: server saw method %q", c.method, c.path, got)
		}
	}
}

// A server that accepts connections but never answers fails the check
// within the timeout rather than hanging.
func TestCheckHTTPTimeout(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // held open, never answered
		}
	}()
	defer func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	}()
	codes, _ := ParseCodes("200")
	m := &Monitor{Type: "http", Timeout: 300 * time.Millisecond, Codes: codes}
	err = Check(context.Background(), m, plainDial, addrPort(t, l.Addr()))
	if err == nil {
		t.Fatal("check of a silent server passed")
	}
	if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Errorf("check of a silent server failed with %v, want a timeout", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// The scheduler reports the transitions of a member whose health the test
// switches: up, down after fall failures, up after rise successes.
func TestScheduler(t *testing.T) {
	var failing atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(503)
			return
		}
		w.WriteHeader(200)
	}))
	defer srv.Close()
	codes, _ := ParseCodes("200")
	target := Target{ID: "m1", Addr: addrPort(t, srv.Listener.Addr()),
		Monitor: Monitor{Type: "http", Delay: 20 * time.Millisecond, Timeout: time.Second, MaxRetries: 3, MaxRetriesDown: 2, Codes: codes}}

	type event struct {
		to     Status
		checks int // checks of the current result kind seen before the change
	}
	var checks, run atomic.Int32
	var lastOK atomic.Bool
	events := make(chan event, 16)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewScheduler(ctx, plainDial, Hooks{
		Checked: func(_ Target, err error) {
			checks.Add(1)
			if ok := err == nil; ok != lastOK.Load() || run.Load() == 0 {
				lastOK.Store(ok)
				run.Store(0)
			}
			run.Add(1)
		},
		Changed: func(_ Target, _, to Status, _ error) { events <- event{to, int(run.Load())} },
	})
	defer s.Stop()
	s.Set([]Target{target})

	wait := func(want Status, wantRun int) {
		t.Helper()
		select {
		case ev := <-events:
			if ev.to != want || ev.checks != wantRun {
				t.Fatalf("status %v after %d equal results, want %v after %d", ev.to, ev.checks, want, wantRun)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no change to %v (checks so far: %d)", want, checks.Load())
		}
	}
	wait(Up, 1)
	failing.Store(true)
	wait(Down, 2)
	if got := s.Status("m1"); got != Down {
		t.Errorf("Status = %v, want down", got)
	}
	failing.Store(false)
	wait(Up, 3)

	// Same target again: the loop and its state stay.
	s.Set([]Target{target})
	if got := s.Status("m1"); got != Up {
		t.Errorf("Status after an identical Set = %v, want up", got)
	}
	// Removed: no more checks.
	s.Set(nil)
	if got := s.Status("m1"); got != Unknown {
		t.Errorf("Status of a removed target = %v, want unknown", got)
	}
}

// ParseCodes never panics, and what it accepts matches only valid codes.
func FuzzParseCodes(f *testing.F) {
	for _, s := range []string{"200", "200,202", "200-204", " 200-204 , 301", "", "-", ",,", "599-100"} {
		f.Add(s, 200)
	}
	f.Fuzz(func(t *testing.T, s string, code int) {
		codes, err := ParseCodes(s)
		if err != nil {
			return
		}
		if codes.Match(code) && (code < 100 || code > 599) {
			t.Fatalf("ParseCodes(%q) matches invalid code %d", s, code)
		}
	})
}
