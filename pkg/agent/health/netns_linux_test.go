package health

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

// A check dials from inside a namespace: only a listener inside that
// namespace sees it.
func TestDialIn(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	ns, err := NewNamespace()
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
	l, err := ListenIn(ns, "tcp", "127.0.0.1:0")
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
	if err := Check(context.Background(), m, DialIn(ns), addrPort(t, l.Addr())); err != nil {
		t.Fatalf("check from inside the namespace: %v", err)
	}
	select {
	case <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the listener in the namespace saw no connection")
	}
}
