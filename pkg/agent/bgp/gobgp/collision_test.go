package gobgp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gbgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/nagare/nagare/pkg/agent/bgp"
)

// The connection collision of an uplink's failback, replayed message by
// message. A scripted upstream (127.0.0.5, AS 65001, BGP identifier
// 10.255.0.1, lower than the speaker's) plays FRR: it accepts the
// speaker's connection and connects to the speaker too, answers on its
// own connection first, then resolves the collision as RFC 4271 §6.8 says
// (the higher identifier's connection, the speaker's, stays), and times
// out in OpenConfirm a connection on which the speaker never confirms.

var racerAddr = netip.MustParseAddr("127.0.0.5")

// racer is the scripted upstream.
type racer struct {
	t  *testing.T
	ln *net.TCPListener

	mu sync.Mutex
	// confirmed counts the speaker's connections it confirmed with a
	// KEEPALIVE in OpenConfirm: sessions up on both ends.
	confirmed int
	live      []net.Conn
}

func newRacer(t *testing.T) *racer {
	t.Helper()
	ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(racerAddr, 0)))
	if err != nil {
		t.Fatal(err)
	}
	r := &racer{t: t, ln: ln}
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		for _, c := range r.live {
			c.Close()
		}
		r.mu.Unlock()
	})
	return r
}

func (r *racer) port() uint16 { return uint16(r.ln.Addr().(*net.TCPAddr).Port) }

func racerOpen() []byte {
	open := []byte{4, 0, 0, 0, 3, 10, 255, 0, 1, 0} // version 4, AS, hold 3 s, id 10.255.0.1, no options
	binary.BigEndian.PutUint16(open[1:], 65001)
	return open
}

// accept takes the speaker's next connection and reads its OPEN.
func (r *racer) accept(deadline time.Time) (net.Conn, error) {
	if err := r.ln.SetDeadline(deadline); err != nil {
		return nil, err
	}
	c, err := r.ln.Accept()
	if err != nil {
		return nil, err
	}
	if err := expect(c, 1); err != nil {
		c.Close()
		return nil, fmt.Errorf("the speaker's OPEN: %w", err)
	}
	return c, nil
}

// expect reads messages until one of type typ (a NOTIFICATION instead is
// an error).
func expect(c net.Conn, typ byte) error {
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	for {
		got, body, err := readMsg(c)
		switch {
		case err != nil:
			return err
		case got == typ:
			return nil
		case got == 3:
			return fmt.Errorf("NOTIFICATION %v", body)
		}
	}
}

// serve answers the speaker's connection as FRR's accepted connection
// does: OPEN and KEEPALIVE, then OpenConfirm for the negotiated hold time
// (3 s); confirmed by the speaker's KEEPALIVE, the session is up and kept
// alive; not, it ends with Hold Timer Expired.
func (r *racer) serve(c net.Conn, openSent bool) {
	if !openSent {
		if err := sendMsg(c, 1, racerOpen()); err != nil {
			c.Close()
			return
		}
	}
	if err := sendMsg(c, 4, nil); err != nil {
		c.Close()
		return
	}
	if err := c.SetReadDeadline(time.Now().Add(3 * time.Second)); err != nil {
		c.Close()
		return
	}
	for {
		typ, _, err := readMsg(c)
		if err != nil {
			if isTimeout(err) {
				_ = sendMsg(c, 3, []byte{4, 0}) // Hold Timer Expired
			}
			c.Close()
			return
		}
		if typ == 4 {
			break
		}
	}
	r.mu.Lock()
	r.confirmed++
	r.live = append(r.live, c)
	r.mu.Unlock()
	go func() { // owned by the test: Cleanup closes c, which ends it
		for sendMsg(c, 4, nil) == nil {
			time.Sleep(time.Second)
		}
	}()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (r *racer) confirmedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.confirmed
}

// race plays the collision against a speaker listening on speakerPort
// (0: none): it returns whether its own connection was refused.
func (r *racer) race(speakerPort int) (refused bool) {
	t := r.t
	t.Helper()
	out, err := r.accept(time.Now().Add(10 * time.Second))
	if err != nil {
		t.Fatalf("the speaker's connection: %v", err)
	}
	// Its own connection, at the same time.
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(racerAddr, 0)), Timeout: time.Second}
	in, err := d.Dial("tcp", net.JoinHostPort(lo.String(), strconv.Itoa(speakerPort)))
	if speakerPort == 0 || err != nil {
		// Nobody listens: what FRR sees of a speaker that only connects.
		go r.serve(out, false)
		return true
	}
	// Answered on its own connection first: the speaker goes on with it.
	if err := expect(in, 1); err != nil {
		t.Fatalf("the speaker's OPEN on the racer's connection: %v", err)
	}
	for _, typ := range []byte{1, 4} {
		body := []byte(nil)
		if typ == 1 {
			body = racerOpen()
		}
		if err := sendMsg(in, typ, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := expect(in, 4); err != nil {
		t.Fatalf("the speaker's KEEPALIVE on the racer's connection: %v", err)
	}
	// Its OPEN on the speaker's connection arrives now; the collision is
	// resolved for the speaker's connection (the higher identifier's): the
	// racer's own is closed with a Cease (Connection Collision Resolution).
	if err := sendMsg(out, 1, racerOpen()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	_ = sendMsg(in, 3, []byte{6, 7})
	in.Close()
	go r.serve(out, true)
	return false
}

// acceptMore serves the speaker's later connections until ctx ends.
func (r *racer) acceptMore(ctx context.Context) {
	for ctx.Err() == nil {
		c, err := r.accept(time.Now().Add(200 * time.Millisecond))
		if err != nil {
			continue
		}
		go r.serve(c, false)
	}
}

// established counts a peer's transitions to Established.
type established struct {
	mu sync.Mutex
	n  int
	up bool
}

func (e *established) set(up bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if up && !e.up {
		e.n++
	}
	e.up = up
}

func (e *established) get() (int, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n, e.up
}

// TestGoBGPCollisionDefect replays the collision against GoBGP v4.8 with
// a listener, as the speaker ran before it stopped listening: GoBGP goes
// on with the racer's connection, leaves its own parked with the racer's
// OPEN, and from then on "establishes" the parked connection every 5 s
// only to read the racer's Hold Timer Expired, while the racer never sees
// a confirmed session. It documents why the speaker only connects; when
// it fails, GoBGP resolves collisions and the package doc needs a look.
//
// It runs only with NAGARE_GOBGP_COLLISION=1: whether GoBGP's own retry
// meets the racer inside its parked window depends on timing, and on a
// quiet machine one of the rounds can come out confirmed (seen once in
// `make test`), so it is a reproduction to run when GoBGP is upgraded, not
// a check of our code. TestSpeakerCollisionFree is that check.
func TestGoBGPCollisionDefect(t *testing.T) {
	if os.Getenv("NAGARE_GOBGP_COLLISION") != "1" {
		t.Skip("a timing-dependent reproduction of GoBGP v4.8's collision defect; run with NAGARE_GOBGP_COLLISION=1 (e.g. after a GoBGP upgrade)")
	}
	r := newRacer(t)
	port := int(freePort(t))
	s := server.NewBgpServer(server.LoggerOption(slog.New(slog.DiscardHandler), nil))
	done := make(chan struct{})
	go func() { defer close(done); s.Serve() }()
	t.Cleanup(func() { s.Stop(); <-done })
	ctx := context.Background()
	if err := s.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{Asn: 64512, RouterId: "10.255.0.2",
		ListenPort: int32(port), ListenAddresses: []string{lo.String()}}}); err != nil {
		t.Fatal(err)
	}
	var est established
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := s.WatchEvent(wctx, server.WatchEventMessageCallbacks{OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
		if ev.Type == apiutil.PEER_EVENT_STATE {
			est.set(ev.Peer.State.SessionState == gbgp.BGP_FSM_ESTABLISHED)
		}
	}}, server.WatchPeer()); err != nil {
		t.Fatal(err)
	}
	// The peer as the speaker configured it before (timers, idle hold).
	sp := &speaker{}
	peer := sp.peer(bgp.PeerConfig{Address: racerAddr, ASN: 65001, Port: r.port(), KeepAlive: time.Second,
		HoldTime: 3 * time.Second, ConnectRetry: time.Second})
	if err := s.AddPeer(ctx, &api.AddPeerRequest{Peer: peer}); err != nil {
		t.Fatal(err)
	}
	if refused := r.race(port); refused {
		t.Fatal("GoBGP's listener refused the racer")
	}
	actx, stop := context.WithCancel(ctx)
	defer stop()
	go r.acceptMore(actx)
	time.Sleep(14 * time.Second)
	n, _ := est.get()
	t.Logf("GoBGP went established %d times in 14 s; the racer confirmed %d sessions", n, r.confirmedCount())
	if r.confirmedCount() > 0 || n < 2 {
		t.Errorf("GoBGP v4.8's collision defect did not show (established %d times, %d confirmed by the peer): "+
			"reconsider the connect-only speaker (package doc)", n, r.confirmedCount())
	}
}

// TestSpeakerCollisionFree: the same upstream against our speaker, which
// only connects. The upstream's own connection is refused, the session
// comes up on the speaker's and stays.
func TestSpeakerCollisionFree(t *testing.T) {
	// BGP's port on the speaker's address, where it listened before.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(lo.String(), "179"), time.Second); err == nil {
		c.Close()
		t.Fatal("something listens on 127.0.0.1:179: this test needs the port free")
	}
	r := newRacer(t)
	ev := &events{}
	sp := startSpeaker(t, ev)
	ctx := context.Background()
	if err := sp.AddPeer(ctx, bgp.PeerConfig{Address: racerAddr, ASN: 65001, Port: r.port(), KeepAlive: time.Second,
		HoldTime: 3 * time.Second, ConnectRetry: time.Second}); err != nil {
		t.Fatal(err)
	}
	refused := r.race(179)
	actx, stop := context.WithCancel(ctx)
	defer stop()
	go r.acceptMore(actx)
	eventually(t, "session established on both ends", 10*time.Second, func() bool {
		st, ok := ev.state(racerAddr)
		return ok && st.State == bgp.StateEstablished && r.confirmedCount() == 1
	})
	time.Sleep(4 * time.Second) // past the negotiated hold time
	if st, _ := ev.state(racerAddr); st.State != bgp.StateEstablished || st.Flaps != 0 || r.confirmedCount() != 1 {
		t.Fatalf("the session did not stay: %+v, %d confirmed by the upstream", st, r.confirmedCount())
	}
	if !refused {
		t.Error("the speaker accepted the upstream's connection: it listens")
	}
}
