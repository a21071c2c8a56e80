package memory

import (
	"context"
	"fmt"
	"net/netip"
	"sync"

	"github.com/nagare/nagare/pkg/packet"
)

// Hub is an in-memory underlay: the IP network between the hosts' tunnel
// endpoints. A datapath whose tunnels are on binds its local address; a
// datagram sent to an address is queued for the endpoint bound there, or
// lost if none is (as an unroutable packet is).
type Hub struct {
	mu       sync.RWMutex
	bound    map[netip.Addr]*endpoint
	captures map[*Capture]struct{}
}

// NewHub returns an empty underlay.
func NewHub() *Hub {
	return &Hub{bound: map[netip.Addr]*endpoint{}, captures: map[*Capture]struct{}{}}
}

// endpoint is a datapath's tunnel socket: one queue for VXLAN and GRE
// alike, so a state packet sent before a data packet is received first.
type endpoint struct {
	rx *fifo
}

// Datagram is a tunnel packet on the underlay: VXLAN (UDP to DstPort) or
// GRE, Payload holding the VXLAN or GRE header and the inner frame.
type Datagram struct {
	Src, Dst netip.Addr
	Kind     packet.Tunnel
	DstPort  uint16 // VXLAN only
	Payload  []byte
}

func (h *Hub) bind(addr netip.Addr, ep *endpoint) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur := h.bound[addr]; cur != nil && cur != ep {
		return fmt.Errorf("memory: underlay address %s is in use by another datapath", addr)
	}
	h.bound[addr] = ep
	return nil
}

func (h *Hub) unbind(addr netip.Addr, ep *endpoint) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.bound[addr] == ep {
		delete(h.bound, addr)
	}
}

// Send puts a datagram on the underlay as any host could (tests use it
// for hostile input): a copy goes to the endpoint bound at d.Dst.
func (h *Hub) Send(d Datagram) {
	h.send(d.Src, d.Dst, d.Kind, d.DstPort, d.Payload, nil)
}

// send delivers hdr+inner from src to dst; it reports false when the
// datagram was lost (nobody bound there, or the receiver's queue full).
func (h *Hub) send(src, dst netip.Addr, kind packet.Tunnel, port uint16, hdr, inner []byte) bool {
	h.mu.RLock()
	ep := h.bound[dst]
	if len(h.captures) > 0 {
		d := Datagram{Src: src, Dst: dst, Kind: kind, DstPort: port, Payload: append(append([]byte(nil), hdr...), inner...)}
		for c := range h.captures {
			select {
			case c.ch <- d:
			default:
			}
		}
	}
	h.mu.RUnlock()
	if ep == nil {
		return false
	}
	f := newFrame(hdr, inner)
	f.src, f.kind, f.port = src, kind, port
	return ep.rx.push(f)
}

// Capture records the datagrams on the underlay, like tcpdump on its
// wire. Datagrams arriving faster than they are read are not recorded.
type Capture struct {
	hub *Hub
	ch  chan Datagram
}

// Capture starts a capture; Close ends it.
func (h *Hub) Capture() *Capture {
	c := &Capture{hub: h, ch: make(chan Datagram, 256)}
	h.mu.Lock()
	h.captures[c] = struct{}{}
	h.mu.Unlock()
	return c
}

// Next returns the next datagram captured, waiting until ctx is done.
func (c *Capture) Next(ctx context.Context) (Datagram, error) {
	select {
	case d := <-c.ch:
		return d, nil
	case <-ctx.Done():
		return Datagram{}, ctx.Err()
	}
}

// Close ends the capture.
func (c *Capture) Close() {
	c.hub.mu.Lock()
	delete(c.hub.captures, c)
	c.hub.mu.Unlock()
}
