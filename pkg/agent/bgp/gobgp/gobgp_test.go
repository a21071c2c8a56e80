package gobgp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gbgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/nagare/nagare/pkg/agent/bgp"
)

// The tests run our speaker against a real GoBGP speaker in the same
// process (the upstream router), over loopback: distinct ports, distinct
// router ids. BFD and the interface binding need namespaces and are
// exercised end to end with FRR (test/e2e).

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// events records what the speaker reports.
type events struct {
	mu     sync.Mutex
	peers  []bgp.PeerStatus
	routes []bgp.Route
	best   map[netip.Prefix]bgp.Route
}

func (e *events) PeerChanged(st bgp.PeerStatus) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.peers = append(e.peers, st)
}

func (e *events) BestPaths(rs []bgp.Route) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.best == nil {
		e.best = map[netip.Prefix]bgp.Route{}
	}
	for _, r := range rs {
		e.routes = append(e.routes, r)
		if r.Withdrawn {
			delete(e.best, r.Prefix)
		} else {
			e.best[r.Prefix] = r
		}
	}
}

func (e *events) state(addr netip.Addr) (bgp.PeerStatus, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.peers) - 1; i >= 0; i-- {
		if e.peers[i].Address == addr {
			return e.peers[i], true
		}
	}
	return bgp.PeerStatus{}, false
}

func (e *events) bestCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.best)
}

func eventually(t *testing.T, what string, timeout time.Duration, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var (
	lo      = netip.MustParseAddr("127.0.0.1")
	hostile = netip.MustParseAddr("127.0.0.3")
)

// upstream is a GoBGP speaker playing the provider's router.
type upstream struct {
	s    *server.BgpServer
	port int32
}

func newUpstream(t *testing.T, asn uint32, port int32) *upstream {
	t.Helper()
	s := server.NewBgpServer(server.LoggerOption(slog.New(slog.DiscardHandler), nil))
	done := make(chan struct{})
	go func() { defer close(done); s.Serve() }()
	t.Cleanup(func() { s.Stop(); <-done })
	if err := s.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{Asn: asn, RouterId: "10.255.0.1",
		ListenPort: port, ListenAddresses: []string{lo.String()}}}); err != nil {
		t.Fatal(err)
	}
	return &upstream{s: s, port: port}
}

func (u *upstream) peerWith(t *testing.T, asn uint32, port int32) {
	t.Helper()
	err := u.s.AddPeer(context.Background(), &api.AddPeerRequest{Peer: &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: lo.String(), PeerAsn: asn},
		Timers:    &api.Timers{Config: &api.TimersConfig{ConnectRetry: 1, HoldTime: 9, KeepaliveInterval: 3}},
		Transport: &api.Transport{RemotePort: uint32(port)},
	}})
	if err != nil {
		t.Fatal(err)
	}
}

// paths are the upstream's routes to prefixes, through itself.
func paths(t *testing.T, prefixes []string) []*apiutil.Path {
	t.Helper()
	var out []*apiutil.Path
	for _, s := range prefixes {
		nlri, err := gbgp.NewIPAddrPrefix(netip.MustParsePrefix(s))
		if err != nil {
			t.Fatal(err)
		}
		nh, err := gbgp.NewPathAttributeNextHop(lo)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, &apiutil.Path{Family: gbgp.RF_IPv4_UC, Nlri: nlri,
			Attrs: []gbgp.PathAttributeInterface{gbgp.NewPathAttributeOrigin(0), nh}})
	}
	return out
}

func (u *upstream) announce(t *testing.T, prefixes ...string) {
	t.Helper()
	if _, err := u.s.AddPath(apiutil.AddPathRequest{Paths: paths(t, prefixes)}); err != nil {
		t.Fatal(err)
	}
}

func (u *upstream) withdraw(t *testing.T, prefixes ...string) {
	t.Helper()
	if err := u.s.DeletePath(apiutil.DeletePathRequest{Paths: paths(t, prefixes)}); err != nil {
		t.Fatal(err)
	}
}

// received lists what the upstream learned from us (its adj-rib-in).
func (u *upstream) received(t *testing.T) map[netip.Prefix]netip.Addr {
	t.Helper()
	out := map[netip.Prefix]netip.Addr{}
	err := u.s.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: gbgp.RF_IPv4_UC},
		func(_ gbgp.NLRI, paths []*apiutil.Path) {
			for _, path := range paths {
				if !path.PeerAddress.IsValid() || path.PeerAddress.IsUnspecified() {
					continue
				}
				if r, ok := route(path); ok {
					out[r.Prefix] = r.NextHop
				}
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// startSpeaker starts our speaker, which only connects: the upstreams'
// own attempts (to a port nothing listens on) are refused.
func startSpeaker(t *testing.T, ev bgp.Events) bgp.Speaker {
	t.Helper()
	sp, err := New(bgp.SpeakerConfig{ASN: 64512, RouterID: netip.MustParseAddr("10.255.0.2"), Address: lo,
		Log: slog.New(slog.DiscardHandler)}, ev)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sp.Stop)
	return sp
}

func TestSpeakerAgainstGoBGP(t *testing.T) {
	ourPort, theirPort := freePort(t), freePort(t)
	up := newUpstream(t, 65001, theirPort)
	up.peerWith(t, 64512, ourPort)
	ev := &events{}
	sp := startSpeaker(t, ev)
	ctx := context.Background()
	if err := sp.AddPeer(ctx, bgp.PeerConfig{Address: lo, ASN: 65001, Port: uint16(theirPort), KeepAlive: time.Second,
		HoldTime: 3 * time.Second, ConnectRetry: time.Second, MaxPrefixes: 20}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "session established", 15*time.Second, func() bool {
		st, ok := ev.state(lo)
		return ok && st.State == bgp.StateEstablished && !st.Since.IsZero()
	})

	// What the upstream announces becomes best paths, with its next hop.
	up.announce(t, "0.0.0.0/0", "192.0.2.0/24")
	eventually(t, "routes learned", 5*time.Second, func() bool { return ev.bestCount() == 2 })
	ev.mu.Lock()
	def := ev.best[netip.MustParsePrefix("0.0.0.0/0")]
	ev.mu.Unlock()
	if def.NextHop != lo || def.Peer != lo || len(def.ASPath) != 1 || def.ASPath[0] != 65001 {
		t.Errorf("default route learned as %+v", def)
	}
	up.withdraw(t, "192.0.2.0/24")
	eventually(t, "withdrawal learned", 5*time.Second, func() bool { return ev.bestCount() == 1 })

	// What we announce reaches the upstream with our address as next hop;
	// a withdrawal takes it back.
	tenant := netip.MustParsePrefix("203.0.113.0/24")
	if err := sp.Advertise(ctx, []netip.Prefix{tenant, tenant}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "announcement received", 5*time.Second, func() bool { return up.received(t)[tenant] == lo })
	peers, err := sp.Peers(ctx)
	if err != nil || len(peers) != 1 || peers[0].State != bgp.StateEstablished || peers[0].Received != 1 || peers[0].Sent != 1 {
		t.Fatalf("Peers = %+v, %v; want established, 1 received, 1 sent", peers, err)
	}
	if err := sp.Withdraw(ctx, []netip.Prefix{tenant, netip.MustParsePrefix("198.51.100.0/24")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "withdrawal received", 5*time.Second, func() bool { _, ok := up.received(t)[tenant]; return !ok })

	// Flaps at 10/s: every change reported, in order, nothing stuck.
	for i := range 20 {
		if i%2 == 0 {
			up.announce(t, "198.18.0.0/15")
		} else {
			up.withdraw(t, "198.18.0.0/15")
		}
		time.Sleep(100 * time.Millisecond)
	}
	eventually(t, "flapping route settles withdrawn", 5*time.Second, func() bool { return ev.bestCount() == 1 })

	// Over the prefix limit: the session is shut down and stays down
	// until enabled again.
	var many []string
	for i := range 25 {
		many = append(many, fmt.Sprintf("10.%d.0.0/16", i))
	}
	up.announce(t, many...)
	eventually(t, "prefix limit shuts the session", 10*time.Second, func() bool {
		st, ok := ev.state(lo)
		return ok && st.State != bgp.StateEstablished && st.PrefixLimit
	})
	eventually(t, "routes of the shut session withdrawn", 5*time.Second, func() bool { return ev.bestCount() == 0 })
	if st, _ := ev.state(lo); st.Flaps < 1 {
		t.Errorf("flaps %d after the shutdown", st.Flaps)
	}
	up.withdraw(t, many...)
	if err := sp.EnablePeer(ctx, lo); err != nil {
		t.Fatal(err)
	}
	eventually(t, "session back after enable", 15*time.Second, func() bool {
		st, ok := ev.state(lo)
		return ok && st.State == bgp.StateEstablished
	})
	eventually(t, "routes back", 5*time.Second, func() bool { return ev.bestCount() == 1 })
	if err := sp.RemovePeer(ctx, lo); err != nil {
		t.Fatal(err)
	}
	eventually(t, "removed peer's routes withdrawn", 5*time.Second, func() bool { return ev.bestCount() == 0 })
}

// A peer that sends a malformed UPDATE gets a NOTIFICATION and loses its
// session; the speaker and its other sessions carry on.
func TestSpeakerHostilePeer(t *testing.T) {
	ourPort, theirPort := freePort(t), freePort(t)
	up := newUpstream(t, 65001, theirPort)
	up.peerWith(t, 64512, ourPort)
	ev := &events{}
	sp := startSpeaker(t, ev)
	ctx := context.Background()
	// The hostile peer waits for our speaker's connections.
	hl, err := net.Listen("tcp", net.JoinHostPort(hostile.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	hostilePort := uint16(hl.Addr().(*net.TCPAddr).Port)
	for _, p := range []bgp.PeerConfig{
		{Address: lo, ASN: 65001, Port: uint16(theirPort), KeepAlive: time.Second, HoldTime: 3 * time.Second, MaxPrefixes: 100},
		{Address: hostile, ASN: 65003, Port: hostilePort, KeepAlive: time.Second, HoldTime: 3 * time.Second, MaxPrefixes: 100},
	} {
		if err := sp.AddPeer(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	up.announce(t, "0.0.0.0/0")
	eventually(t, "good session up with its route", 15*time.Second, func() bool { return ev.bestCount() == 1 })

	for _, c := range []struct {
		name   string
		update []byte
	}{
		// An attribute whose length runs past the message.
		{"attribute overrun", update(nil, []byte{0x40, 1, 200, 0}, nil)},
		// A withdrawn-routes length larger than the message.
		{"withdrawn overrun", append([]byte{0x0f, 0xff}, 0, 0)},
		// A mandatory attribute missing (no ORIGIN, no AS_PATH) with NLRI.
		{"missing mandatory", update(nil, nil, []byte{24, 198, 51, 100})},
		// A prefix length of 33.
		{"prefix length 33", update(nil, originASPathNextHop(65003), []byte{33, 10, 0, 0, 0, 0})},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := hostileSession(t, hl.(*net.TCPListener))
			defer conn.Close()
			writeMsg(t, conn, 2, c.update)
			// GoBGP answers with a NOTIFICATION and closes, or treats the
			// update as a withdrawal (RFC 7606) and keeps the session:
			// either way nothing it sent gets in.
			if err := conn.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
				t.Fatal(err)
			}
			answer := "the session stays (treat-as-withdraw)"
			for {
				typ, body, err := readMsg(conn)
				if typ == 3 && len(body) >= 2 {
					answer = fmt.Sprintf("NOTIFICATION %d/%d", body[0], body[1])
					break
				}
				if err != nil {
					if !errors.Is(err, os.ErrDeadlineExceeded) {
						answer = "closed: " + err.Error()
					}
					break
				}
			}
			t.Logf("speaker's answer: %s", answer)
			if n := ev.bestCount(); n != 1 {
				t.Fatalf("after a malformed update there are %d best paths, want the good peer's 1", n)
			}
		})
	}
	st, ok := ev.state(lo)
	if !ok || st.State != bgp.StateEstablished {
		t.Fatalf("the good session suffered: %+v", st)
	}
	peers, err := sp.Peers(ctx)
	if err != nil || len(peers) != 2 {
		t.Fatalf("Peers after the hostile peer: %+v, %v", peers, err)
	}
}

// hostileSession takes our speaker's next connection to the hostile peer
// (127.0.0.3, AS 65003) and completes the session by hand; the speaker
// connects again within seconds of a reset.
func hostileSession(t *testing.T, l *net.TCPListener) net.Conn {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		conn, err := tryHostileSession(l, deadline)
		if err == nil {
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("hostile session: %v", err)
		}
	}
}

func tryHostileSession(l *net.TCPListener, deadline time.Time) (net.Conn, error) {
	if err := l.SetDeadline(deadline); err != nil {
		return nil, err
	}
	conn, err := l.Accept()
	if err != nil {
		return nil, err
	}
	open := []byte{4, 0, 0, 0, 9, 3, 3, 3, 3, 0} // version 4, AS, hold 9, id, no options
	binary.BigEndian.PutUint16(open[1:], 65003)
	if err := sendMsg(conn, 1, open); err != nil {
		conn.Close()
		return nil, err
	}
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		conn.Close()
		return nil, err
	}
	for {
		typ, _, err := readMsg(conn)
		switch {
		case err != nil:
			conn.Close()
			return nil, err
		case typ == 1: // their OPEN: confirm it
			if err := sendMsg(conn, 4, nil); err != nil {
				conn.Close()
				return nil, err
			}
		case typ == 4: // their KEEPALIVE: established
			return conn, nil
		case typ == 3:
			conn.Close()
			return nil, errors.New("refused with a NOTIFICATION")
		}
	}
}

func update(withdrawn, attrs, nlri []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(withdrawn)))
	b = append(b, withdrawn...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(attrs)))
	b = append(b, attrs...)
	return append(b, nlri...)
}

func originASPathNextHop(asn uint16) []byte {
	b := []byte{0x40, 1, 1, 0}                               // ORIGIN IGP
	b = append(b, 0x40, 2, 4, 2, 1, byte(asn>>8), byte(asn)) // AS_PATH, one 2-byte AS
	return append(b, 0x40, 3, 4, 127, 0, 0, 3)               // NEXT_HOP
}

func writeMsg(t *testing.T, w io.Writer, typ byte, body []byte) {
	t.Helper()
	if err := sendMsg(w, typ, body); err != nil {
		t.Fatal(err)
	}
}

func sendMsg(w io.Writer, typ byte, body []byte) error {
	b := make([]byte, 19, 19+len(body))
	for i := range 16 {
		b[i] = 0xff
	}
	binary.BigEndian.PutUint16(b[16:], uint16(19+len(body)))
	b[18] = typ
	_, err := w.Write(append(b, body...))
	return err
}

func readMsg(r io.Reader) (byte, []byte, error) {
	var h [19]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(h[16:]))
	if n < 19 {
		return 0, nil, fmt.Errorf("message length %d", n)
	}
	body := make([]byte, n-19)
	_, err := io.ReadFull(r, body)
	return h[18], body, err
}

// A reset asked while the session is down is not kept for the next one:
// GoBGP would send it to the session as soon as it is established.
func TestResetPeerNotEstablished(t *testing.T) {
	ourPort, theirPort := freePort(t), freePort(t)
	up := newUpstream(t, 65001, theirPort)
	ev := &events{}
	sp := startSpeaker(t, ev)
	ctx := context.Background()
	if err := sp.AddPeer(ctx, bgp.PeerConfig{Address: lo, ASN: 65001, Port: uint16(theirPort), KeepAlive: time.Second,
		HoldTime: 3 * time.Second, ConnectRetry: time.Second}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := sp.ResetPeer(ctx, lo); err != nil {
		t.Fatal(err)
	}
	up.peerWith(t, 64512, ourPort) // the upstream lets it in only now
	eventually(t, "session established", 15*time.Second, func() bool {
		st, ok := ev.state(lo)
		return ok && st.State == bgp.StateEstablished
	})
	time.Sleep(1500 * time.Millisecond)
	if st, _ := ev.state(lo); st.State != bgp.StateEstablished || st.Flaps != 0 {
		t.Fatalf("after a reset asked while down, the session is %s with %d flaps", st.State, st.Flaps)
	}
}
