//go:build linux

package dptest

import (
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/packet"
)

// Memory is the fixture of the in-memory datapath: every host is a
// memory.Host, the hosts of one test share an in-memory underlay, a VM's
// end is the interface's other side. It needs no root.
func Memory() Fixture { return &memFixture{hubs: map[*testing.T]*memory.Hub{}} }

type memFixture struct {
	mu   sync.Mutex
	hubs map[*testing.T]*memory.Hub // one underlay per test
}

func (f *memFixture) Name() string { return memory.Name }

func (f *memFixture) newHost(t *testing.T, name string, flows datapath.FlowConfig) (datapath.Datapath, hostEnv) {
	f.mu.Lock()
	hub := f.hubs[t]
	if hub == nil {
		hub = memory.NewHub()
		f.hubs[t] = hub
		t.Cleanup(func() {
			f.mu.Lock()
			delete(f.hubs, t)
			f.mu.Unlock()
		})
	}
	f.mu.Unlock()
	h := memory.NewHost(hub)
	return memory.New(datapath.Config{Flows: flows}, h), &memHost{host: h}
}

// joinUnderlay: the hosts of a test share their hub already, and any
// address may be used on it.
func (f *memFixture) joinUnderlay(t *testing.T, a, b hostEnv) {
	if a.(*memHost).host.Hub() != b.(*memHost).host.Hub() {
		t.Fatal("memory fixture: the two hosts are on different underlays")
	}
}

type memHost struct{ host *memory.Host }

func (h *memHost) addInterface(t *testing.T, name string) (string, vmEnd) {
	t.Helper()
	i, err := h.host.AddInterface("t" + name)
	if err != nil {
		t.Fatal(err)
	}
	return i.Name(), memEnd{i}
}

// memEnd is the VM's side of an in-memory interface.
type memEnd struct{ i *memory.Interface }

func (e memEnd) send(frames [][]byte) error { return e.i.Send(frames...) }

func (e memEnd) recv(d time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	f, err := e.i.Recv(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, nil
	}
	return f, err
}

// sendRaw puts a datagram from `from` to underA on the underlay.
func (h *memHost) sendRaw(t *testing.T, from netip.Addr, gre bool, data []byte) {
	d := memory.Datagram{Src: from, Dst: underA, Kind: packet.TunnelVXLAN, DstPort: packet.DefaultVXLANPort, Payload: data}
	if gre {
		d.Kind, d.DstPort = packet.TunnelGRE, 0
	}
	h.host.Hub().Send(d)
}

// capture records the datagrams on the underlay; the host's own are those
// addressed to it (underB: the suite captures on host B).
func (h *memHost) capture(t *testing.T) wireCapture {
	c := h.host.Hub().Capture()
	t.Cleanup(c.Close)
	return memCapture{c}
}

type memCapture struct{ c *memory.Capture }

func (c memCapture) tunnelPacket(t *testing.T, kind packet.Tunnel) *wirePacket {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), arriveTimeout)
	defer cancel()
	for {
		d, err := c.c.Next(ctx)
		if err != nil {
			t.Fatalf("no %s packet captured on the underlay within %v", kind, arriveTimeout)
		}
		if d.Kind != kind || d.Dst != underB || len(d.Payload) < 8 {
			continue
		}
		w := &wirePacket{Src: d.Src, Dst: d.Dst, Inner: d.Payload[8:]}
		if kind == packet.TunnelVXLAN {
			w.Key = binary.BigEndian.Uint32(d.Payload[4:]) >> 8
		} else {
			w.GREProto, w.Key = binary.BigEndian.Uint16(d.Payload[2:]), binary.BigEndian.Uint32(d.Payload[4:])
		}
		return w
	}
}

// tcpdump: an in-memory underlay has no wire for tcpdump.
func (h *memHost) tcpdump(t *testing.T, kind packet.Tunnel) *tcpdump { return nil }
