//go:build linux

package harness

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/nagare/nagare/pkg/netns"
)

// An agent that runs inside its hypervisor's namespace (as a gateway's
// does in production: its BGP speakers' sockets live there) reaches the
// NSDB, which listens on the root namespace's loopback, through a Relay:
// a listener on the namespace's loopback whose connections the test
// process splices to the root's. Nothing is created in the root
// namespace. Cutting the relay cuts the agent off from the NSDB (its
// connections reset, new ones refused) while everything else about it
// keeps working: the NSDB partition of a real gateway.
type Relay struct {
	// Addr is the listening address the client uses.
	Addr   string
	listen func() (net.Listener, error)
	dial   func(ctx context.Context) (net.Conn, error)

	mu    sync.Mutex
	l     net.Listener
	conns map[net.Conn]bool
	wg    sync.WaitGroup
}

// relayInto serves, on 127.0.0.1:port of namespace ns, connections to
// target on the root namespace's loopback.
func relayInto(t testing.TB, ns *NS, target string) *Relay {
	t.Helper()
	port := freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	r := &Relay{Addr: addr, conns: map[net.Conn]bool{},
		listen: func() (net.Listener, error) {
			h, err := netns.Open(ns.Path)
			if err != nil {
				return nil, err
			}
			defer h.Close()
			return netns.Listen(h, "tcp", addr)
		},
		dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", target)
		}}
	r.start(t)
	return r
}

// relayOut serves, on the root namespace's loopback, connections to
// target on the loopback of namespace ns (an agent's metrics).
func relayOut(t testing.TB, ns *NS, target string) *Relay {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	r := &Relay{Addr: addr, conns: map[net.Conn]bool{},
		listen: func() (net.Listener, error) { return net.Listen("tcp", addr) },
		dial: func(ctx context.Context) (net.Conn, error) {
			h, err := netns.Open(ns.Path)
			if err != nil {
				return nil, err
			}
			defer h.Close()
			return netns.Dial(ctx, h, "tcp", target)
		}}
	r.start(t)
	return r
}

func (r *Relay) start(t testing.TB) {
	t.Helper()
	if err := r.Restore(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Cut()
		r.wg.Wait()
	})
}

// Restore listens again after Cut.
func (r *Relay) Restore() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.l != nil {
		return nil
	}
	l, err := r.listen()
	if err != nil {
		return fmt.Errorf("relay %s: %w", r.Addr, err)
	}
	r.l = l
	r.wg.Add(1)
	go r.accept(l)
	return nil
}

// Cut closes the listener and every relayed connection.
func (r *Relay) Cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.l != nil {
		_ = r.l.Close()
		r.l = nil
	}
	for c := range r.conns {
		_ = c.Close()
	}
	clear(r.conns)
}

func (r *Relay) accept(l net.Listener) {
	defer r.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		r.wg.Add(1)
		go r.splice(c)
	}
}

// splice copies both ways until either side closes or the relay is cut.
func (r *Relay) splice(in net.Conn) {
	defer r.wg.Done()
	out, err := r.dial(context.Background())
	if err != nil {
		_ = in.Close()
		return
	}
	r.mu.Lock()
	if r.l == nil { // cut meanwhile
		r.mu.Unlock()
		_ = in.Close()
		_ = out.Close()
		return
	}
	r.conns[in], r.conns[out] = true, true
	r.mu.Unlock()
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		// Whatever ends the copy (a close, a reset, a cut) ends the
		// splice: there is nothing else to do with its error.
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go cp(out, in)
	go cp(in, out)
	<-done
	_ = in.Close()
	_ = out.Close()
	<-done
	r.mu.Lock()
	delete(r.conns, in)
	delete(r.conns, out)
	r.mu.Unlock()
}
