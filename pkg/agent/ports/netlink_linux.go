package ports

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/netns"
)

// Netlink is the kernel's interfaces of a network namespace (a path like
// /run/netns/hv1; empty for the agent process's own), listed and
// followed over rtnetlink.
type Netlink struct {
	Netns string
}

var _ datapath.LinkSource = Netlink{}

// Links implements datapath.LinkSource.
func (n Netlink) Links(ctx context.Context) ([]datapath.Link, error) {
	h, err := netns.NetlinkPath(n.Netns)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	for attempt := 0; ; attempt++ {
		links, err := h.LinkList()
		// A dump interrupted by a concurrent change is retried (the
		// library returns the partial list with the error).
		if errors.Is(err, netlink.ErrDumpInterrupted) && attempt < 5 && ctx.Err() == nil {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list interfaces in %q: %w", n.Netns, err)
		}
		out := make([]datapath.Link, 0, len(links))
		for _, l := range links {
			out = append(out, link(l))
		}
		return out, nil
	}
}

func link(l netlink.Link) datapath.Link {
	a := l.Attrs()
	return datapath.Link{Name: a.Name, Index: a.Index, Up: a.Flags&net.FlagUp != 0, Running: a.Flags&net.FlagRunning != 0}
}

// WatchLinks implements datapath.LinkSource with a link subscription
// that lists the existing links first.
func (n Netlink) WatchLinks(ctx context.Context, fn func(datapath.LinkEvent)) error {
	ns, err := netns.Open(n.Netns)
	if err != nil {
		return err
	}
	updates := make(chan netlink.LinkUpdate, 256)
	done := make(chan struct{})
	fatal := make(chan error, 1)
	opts := netlink.LinkSubscribeOptions{ListExisting: true, ErrorCallback: func(err error) {
		// Most callbacks are about one message; a dump interrupted by a
		// change leaves the backstop relisting to catch up. The
		// subscription itself ends by closing updates.
		select {
		case fatal <- err:
		default:
		}
	}}
	opts.Namespace = &ns
	err = netlink.LinkSubscribeWithOptions(updates, done, opts)
	ns.Close()
	if err != nil {
		return fmt.Errorf("subscribe to the interfaces of %q: %w", n.Netns, err)
	}
	defer func() {
		close(done)
		for range updates { // the library's reader exits once it can send no more
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u, ok := <-updates:
			if !ok {
				select {
				case err := <-fatal:
					return fmt.Errorf("link subscription in %q ended: %w", n.Netns, err)
				default:
					return fmt.Errorf("link subscription in %q ended", n.Netns)
				}
			}
			fn(datapath.LinkEvent{Link: link(u.Link), Deleted: u.Header.Type == unix.RTM_DELLINK})
		}
	}
}
