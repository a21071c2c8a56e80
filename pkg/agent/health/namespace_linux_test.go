package health

import (
	"context"
	"net"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nagare/nagare/pkg/netns"
)

// A check dials with the dialer it is given: one from inside a namespace
// (pkg/netns) reaches only a listener inside that namespace.
func TestCheckFromNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	ns, err := netns.New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	l, err := netns.Listen(ns, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	m := &Monitor{Type: "tcp", Timeout: 2 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return netns.Dial(ctx, ns, network, addr)
	}
	if err := Check(context.Background(), m, dial, addrPort(t, l.Addr())); err != nil {
		t.Fatalf("check from inside the namespace: %v", err)
	}
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the listener in the namespace saw no connection")
	}
}
