//go:build linux

// Package netns runs code inside Linux network namespaces, and is the only
// package in Nagare that switches a thread between them (internal/archtest
// holds the tree to that).
//
// setns(2) moves one OS thread, while Go moves goroutines between threads
// freely: a goroutine that switched its thread without locking it could
// resume on another thread in the old namespace, and a switched thread
// returned to the scheduler would run unrelated goroutines in the wrong
// namespace — sockets the agent meant for the host opened next to a VM.
// Do avoids both: fn runs on a fresh goroutine locked to its thread, and
// the thread goes back to the scheduler only once it is back where it
// started. Everything else here (sockets, netlink handles, new and named
// namespaces) is built on Do or on handles that need no switching at all.
//
// Handles come from github.com/vishvananda/netns; Handle is its NsHandle,
// so values from either package mix.
package netns

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Handle is an open network namespace (a file descriptor). Close it when
// done; the namespace itself lives on while anything (a bind mount under
// RunDir, a process, a handle) still holds it.
type Handle = vnetns.NsHandle

// errRestore marks a failure to switch a thread back to its namespace.
var errRestore = errors.New("restore the thread's original network namespace")

// Open returns a handle to the namespace at path (/run/netns/NAME,
// /proc/PID/ns/net), or to the process's own namespace when path is "":
// the namespace of its main thread, not whatever namespace the calling
// thread happens to be in.
func Open(path string) (Handle, error) {
	if path == "" {
		h, err := vnetns.GetFromPid(os.Getpid())
		if err != nil {
			return vnetns.None(), fmt.Errorf("open the process's network namespace: %w", err)
		}
		return h, nil
	}
	h, err := vnetns.GetFromPath(path)
	if err != nil {
		return vnetns.None(), fmt.Errorf("open network namespace %s: %w", path, err)
	}
	return h, nil
}

// Do runs fn on an OS thread switched into ns and returns fn's error, or
// the error of switching. The caller's own thread never changes namespace.
// File descriptors fn opens (sockets, netlink sockets) stay in ns after Do
// returns, which is the usual reason to call it: only creating a socket
// needs the namespace, using it works from any thread.
//
// fn must not start goroutines (they run on other threads, in the original
// namespace) nor keep thread-local state beyond the call. When Do returns
// an error, fn may still have succeeded: switching back can fail after it,
// so a caller that opened something in fn closes it on any error.
func Do(ns Handle, fn func() error) error {
	return do(ns, ns.String(), fn)
}

// DoPath is Do for the namespace at path (see Open; "" is the process's).
func DoPath(path string, fn func() error) error {
	h, err := Open(path)
	if err != nil {
		return err
	}
	defer h.Close()
	return do(h, path, fn)
}

// do is Do; name says which namespace in errors.
func do(ns Handle, name string, fn func() error) error {
	return onLockedThread(func() error {
		orig, err := vnetns.Get()
		if err != nil {
			return fmt.Errorf("open this thread's network namespace: %w", err)
		}
		defer orig.Close()
		// A failed setns leaves the thread where it was, so the thread
		// may still be unlocked.
		if err := vnetns.Set(ns); err != nil {
			return fmt.Errorf("enter network namespace %s: %w", name, err)
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			return errors.Join(ferr, fmt.Errorf("%w after entering %s: %w", errRestore, name, err))
		}
		return ferr
	})
}

// onLockedThread runs fn on a fresh goroutine locked to its OS thread. If
// fn reports that it could not put the thread back into its original
// namespace (errRestore), the thread is never unlocked: a goroutine that
// exits while locked takes its thread with it (the runtime terminates the
// thread instead of reusing it), which is the only safe end for a thread
// stuck in the wrong namespace.
func onLockedThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := fn()
		if !errors.Is(err, errRestore) {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// Dial connects to addr from inside ns (as net.Dialer.DialContext).
func Dial(ctx context.Context, ns Handle, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := Do(ns, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		if c != nil {
			c.Close()
		}
		return nil, err
	}
	return c, nil
}

// Listen listens on addr inside ns (as net.Listen).
func Listen(ns Handle, network, addr string) (net.Listener, error) {
	var l net.Listener
	err := Do(ns, func() (err error) {
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		if l != nil {
			l.Close()
		}
		return nil, err
	}
	return l, nil
}

// Socket opens a socket(2) inside ns (raw and packet sockets, which the
// net package does not offer) and returns its file descriptor.
func Socket(ns Handle, domain, typ, proto int) (int, error) {
	fd := -1
	err := Do(ns, func() (err error) {
		fd, err = unix.Socket(domain, typ, proto)
		return err
	})
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return -1, err
	}
	return fd, nil
}

// Netlink returns a netlink handle whose sockets live in ns, to configure
// links, addresses and routes there from any thread. Close it when done.
func Netlink(ns Handle) (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in network namespace %s: %w", ns, err)
	}
	return h, nil
}

// NetlinkPath is Netlink for the namespace at path (see Open; "" is the
// process's).
func NetlinkPath(path string) (*netlink.Handle, error) {
	ns, err := Open(path)
	if err != nil {
		return nil, err
	}
	defer ns.Close() // the handle's sockets keep the namespace
	return Netlink(ns)
}

// New creates an anonymous network namespace and returns a handle to it.
// The namespace lives as long as something holds it: the handle, a
// process, or an interface's peer inside it. An agent that dies takes it
// (and the veths inside) with it, so nothing is left to clean up.
func New() (Handle, error) {
	h, err := inNew(func() error { return nil })
	if err != nil {
		return vnetns.None(), fmt.Errorf("create network namespace: %w", err)
	}
	return h, nil
}

// inNew creates a network namespace on a locked thread, runs fn on that
// thread inside it, and switches the thread back.
func inNew(fn func() error) (Handle, error) {
	ns := vnetns.None()
	err := onLockedThread(func() error {
		orig, err := vnetns.Get()
		if err != nil {
			return fmt.Errorf("open this thread's network namespace: %w", err)
		}
		defer orig.Close()
		ns, err = vnetns.New() // unshare(2): this thread is now inside
		if err != nil {
			return err // unshare failed: the thread did not move
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			return errors.Join(ferr, fmt.Errorf("%w after creating a namespace: %w", errRestore, err))
		}
		return ferr
	})
	if err != nil {
		if ns.IsOpen() {
			ns.Close()
		}
		return vnetns.None(), err
	}
	return ns, nil
}
