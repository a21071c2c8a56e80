//go:build linux

// Package nsexec runs a function inside a network namespace. setns(2)
// switches one OS thread, so the function runs on a locked thread of its
// own goroutine; sockets and BPF links it creates stay bound to the
// namespace after it returns, which is the usual reason to call it.
package nsexec

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has entered the network namespace at
// nsPath (/run/netns/NAME, /proc/PID/ns/net), or directly if nsPath is
// empty, and returns its error.
//
// fn must not start goroutines (they would run on other threads, in the
// original namespace). If switching back fails the thread stays locked, so
// the runtime destroys it rather than reuse a thread in the wrong
// namespace.
func Do(nsPath string, fn func() error) error {
	if nsPath == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open current netns: %w", err)
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", nsPath, err)
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", nsPath, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("restore netns after %s: %w", nsPath, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}
