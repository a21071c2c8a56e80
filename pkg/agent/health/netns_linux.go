package health

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// InNamespace runs fn on an OS thread switched into ns; sockets fn opens
// stay in ns. fn must not start goroutines (they would run elsewhere).
func InNamespace(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread dies with this goroutine rather
			// than run other goroutines in the wrong namespace.
			errc <- fmt.Errorf("leave network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// DialIn returns a DialFunc whose sockets are created in ns. Only the
// socket's creation needs the namespace: connecting and I/O then go
// through the ordinary poller from any thread.
func DialIn(ns netns.NsHandle) DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := InNamespace(ns, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// ListenIn listens on addr inside ns (for tests and tools).
func ListenIn(ns netns.NsHandle, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := InNamespace(ns, func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	return l, err
}

// NewNamespace creates an anonymous network namespace. It lives as long
// as the handle (or a process or interface inside it) does: when the
// agent dies, the kernel deletes it and the veth end inside, and so the
// veth peer — nothing is left behind to clean.
func NewNamespace() (netns.NsHandle, error) {
	var ns netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		ns, err = netns.New() // unshare: this thread is now inside
		if serr := netns.Set(orig); serr != nil {
			errc <- fmt.Errorf("leave new network namespace: %w", serr) // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		return netns.None(), fmt.Errorf("create network namespace: %w", err)
	}
	return ns, nil
}
