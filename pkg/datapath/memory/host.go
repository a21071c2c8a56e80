package memory

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/nagare/nagare/internal/eventq"
	"github.com/nagare/nagare/pkg/datapath"
)

// Host is a simulated hypervisor's network namespace: the interfaces its
// datapath may bind, and its place on an underlay.
type Host struct {
	hub *Hub

	mu       sync.Mutex
	ifaces   map[string]*Interface
	lastIdx  int
	watchers map[*eventq.Queue[datapath.LinkEvent]]struct{}
}

// NewHost returns a host without interfaces on hub (a private one if hub
// is nil).
func NewHost(hub *Hub) *Host {
	if hub == nil {
		hub = NewHub()
	}
	return &Host{hub: hub, ifaces: map[string]*Interface{}, lastIdx: 1, watchers: map[*eventq.Queue[datapath.LinkEvent]]struct{}{}}
}

// Hub is the underlay the host's datapath sends tunnel packets on.
func (h *Host) Hub() *Hub { return h.hub }

// Interface is one network interface of a Host. One side is what the
// datapath attaches as a port; the other is a VM's: what it sends (Send)
// enters the datapath, what the datapath outputs it receives (Recv).
type Interface struct {
	name  string
	index int
	up    atomic.Bool
	toDP  *fifo         // sent by the VM, read by the datapath
	toVM  *fifo         // output by the datapath, read by the VM
	gone  chan struct{} // closed when the interface is deleted
	// Frames lost because a queue was full: the datapath did not read
	// (rxLost), the VM did not read (txLost).
	rxLost, txLost atomic.Uint64
}

// ErrNoInterface: no interface of that name (any more).
var ErrNoInterface = errors.New("memory: no such interface")

// AddInterface creates an interface, administratively up, as `ip link
// add` would; a name in use is an error.
func (h *Host) AddInterface(name string) (*Interface, error) {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \t\n") {
		return nil, fmt.Errorf("memory: %q is not an interface name", name)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ifaces[name] != nil {
		return nil, fmt.Errorf("memory: interface %s exists", name)
	}
	h.lastIdx++
	i := &Interface{name: name, index: h.lastIdx, toDP: newFIFO(), toVM: newFIFO(),
		gone: make(chan struct{})}
	i.up.Store(true)
	h.ifaces[name] = i
	h.notifyLocked(datapath.LinkEvent{Link: i.link()})
	return i, nil
}

// DeleteInterface removes an interface, as a VM's tap goes when the VM
// stops. A port bound to it stops receiving, and what it outputs there is
// lost, until it is bound again to an interface of that name.
func (h *Host) DeleteInterface(name string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := h.ifaces[name]
	if i == nil {
		return fmt.Errorf("%w: %s", ErrNoInterface, name)
	}
	delete(h.ifaces, name)
	close(i.gone)
	h.notifyLocked(datapath.LinkEvent{Link: i.link(), Deleted: true})
	return nil
}

// SetUp sets an interface's administrative state.
func (h *Host) SetUp(name string, up bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := h.ifaces[name]
	if i == nil {
		return fmt.Errorf("%w: %s", ErrNoInterface, name)
	}
	if i.up.Swap(up) != up {
		h.notifyLocked(datapath.LinkEvent{Link: i.link()})
	}
	return nil
}

// Interface returns the interface called name.
func (h *Host) Interface(name string) (*Interface, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	i, ok := h.ifaces[name]
	return i, ok
}

// Links implements datapath.LinkSource.
func (h *Host) Links(ctx context.Context) ([]datapath.Link, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.linksLocked(), nil
}

func (h *Host) linksLocked() []datapath.Link {
	out := make([]datapath.Link, 0, len(h.ifaces))
	for _, i := range h.ifaces {
		out = append(out, i.link())
	}
	slices.SortFunc(out, func(a, b datapath.Link) int { return a.Index - b.Index })
	return out
}

// WatchLinks implements datapath.LinkSource. A slow watcher never blocks
// the host: its events queue.
func (h *Host) WatchLinks(ctx context.Context, fn func(datapath.LinkEvent)) error {
	q := eventq.New[datapath.LinkEvent]()
	h.mu.Lock()
	for _, l := range h.linksLocked() {
		q.Push(datapath.LinkEvent{Link: l})
	}
	h.watchers[q] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.watchers, q)
		h.mu.Unlock()
	}()
	for {
		evs, err := q.Take(ctx)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			fn(ev)
		}
	}
}

func (h *Host) notifyLocked(ev datapath.LinkEvent) {
	for q := range h.watchers {
		q.Push(ev)
	}
}

// Name is the interface's name.
func (i *Interface) Name() string { return i.name }

// Index is the interface's index: a new one for every interface created.
func (i *Interface) Index() int { return i.index }

func (i *Interface) link() datapath.Link {
	up := i.up.Load()
	return datapath.Link{Name: i.name, Index: i.index, Up: up, Running: up}
}

func (i *Interface) deleted() bool {
	select {
	case <-i.gone:
		return true
	default:
		return false
	}
}

// Send sends frames into the interface as its VM would: each is copied and
// queued for the port bound to the interface. Frames that find the queue
// full are lost and counted, as a full receive ring loses them.
func (i *Interface) Send(frames ...[]byte) error {
	if i.deleted() {
		return fmt.Errorf("%w: %s", ErrNoInterface, i.name)
	}
	for _, b := range frames {
		if !i.toDP.push(newFrame(b)) {
			i.rxLost.Add(1)
		}
	}
	return nil
}

// Recv returns the next frame the datapath sent out of the interface,
// waiting until ctx is done.
func (i *Interface) Recv(ctx context.Context) ([]byte, error) {
	for {
		if f := i.toVM.pop(); f != nil {
			b := append([]byte(nil), f.bytes()...)
			f.free()
			return b, nil
		}
		select {
		case <-i.toVM.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// output queues a frame for the VM; false when it is lost (the interface
// is gone, or the VM does not read).
func (i *Interface) output(f *frame) bool {
	if i.deleted() {
		f.free()
		return false
	}
	if !i.toVM.push(f) {
		i.txLost.Add(1)
		return false
	}
	return true
}
