package memory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/packet"
)

// Name is the name the in-memory datapath is registered under
// (nagare-agent --datapath memory).
const Name = "memory"

func init() {
	datapath.Register(Name, func(cfg datapath.Config) (datapath.Datapath, error) {
		if cfg.Netns != "" {
			return nil, fmt.Errorf("the in-memory datapath binds in-memory interfaces, not those of network namespace %s", cfg.Netns)
		}
		return New(cfg, NewHost(nil)), nil
	})
}

// Datapath is the in-memory implementation of datapath.Datapath.
type Datapath struct {
	host  *Host
	log   *slog.Logger
	flows datapath.FlowConfig
	epoch time.Time // flow times are nanoseconds since epoch

	mu      sync.Mutex // serialises ports, tunnels and the lifecycle
	ports   atomic.Pointer[portSet]
	table   table
	tun     atomic.Pointer[tunnels]
	ep      *endpoint // this datapath's tunnel endpoint on the hub
	handler datapath.MissHandler
	state   datapath.StateHandler
	probe   datapath.ProbeHandler
	// run is Run's context, which its goroutines follow and Close ends;
	// nil before Run.
	run    context.Context
	stop   context.CancelFunc
	closed atomic.Bool
	wg     sync.WaitGroup

	hits, misses, lost atomic.Uint64
	drops              map[string]*atomic.Uint64 // every reason this datapath counts, made in New
	malformed          [64]atomic.Uint64         // by packet.Drop
	tunMu              sync.Mutex
	tunStats           [2]datapath.TunnelStats // VXLAN, GRE
}

var _ datapath.Datapath = (*Datapath)(nil)
var _ datapath.LinkSource = (*Datapath)(nil)

// port is a bound interface.
type port struct {
	cfg     datapath.PortConfig
	iface   *Interface
	gone    atomic.Bool   // detached
	quit    chan struct{} // closed by RemovePort and Close: the reader stops
	started bool          // reader started; guarded by Datapath.mu
	// lostBase is the interface's loss count when the port was bound:
	// what the port lost is the count since.
	lostBase uint64

	rxPackets, rxBytes, txPackets, txBytes, txDropped atomic.Uint64
	qos                                               portQoS
}

// portSet is an immutable snapshot of the bound ports, replaced when one
// is added or removed, so the packet path finds ports without locks.
type portSet struct {
	list  []*port
	index map[int32]*port  // by topology index: outputs, in-ports
	key   map[uint32]*port // by tunnel key: tunnel delivery
}

func newPortSet(list []*port) *portSet {
	s := &portSet{list: list, index: make(map[int32]*port, len(list)), key: make(map[uint32]*port, len(list))}
	for _, p := range list {
		s.index[p.cfg.Index] = p
		if p.cfg.TunnelKey != 0 { // no key: not reached through tunnels
			s.key[p.cfg.TunnelKey] = p
		}
	}
	return s
}

// New returns a datapath binding host's interfaces, with no ports and
// tunnels off.
func New(cfg datapath.Config, host *Host) *Datapath {
	dp := &Datapath{host: host, log: cfg.Logger, flows: cfg.Flows.WithDefaults(), epoch: time.Now(),
		ep: &endpoint{rx: newFIFO()}, drops: map[string]*atomic.Uint64{}}
	if dp.log == nil {
		dp.log = slog.Default()
	}
	for _, r := range []string{datapath.DropFlow, datapath.DropTTLExpired, datapath.DropPopUntagged, datapath.DropVLANHeadroom,
		datapath.DropRewriteRefused, datapath.DropPortGone, datapath.DropTxError,
		datapath.DropTunnelUnknownPeer, datapath.DropTunnelUnknownKey, datapath.DropTunnelMalformed,
		datapath.DropTunnelDisabled, datapath.DropTunnelTxError, datapath.DropTunnelStateUnhandled, datapath.DropTunnelProbeUnhandled,
		datapath.DropQoSPoliced, datapath.DropMirrorTxError} {
		dp.drops[r] = new(atomic.Uint64)
	}
	dp.table.init(dp)
	dp.ports.Store(newPortSet(nil))
	dp.tun.Store(&tunnels{})
	return dp
}

// Host is the host whose interfaces the datapath binds.
func (dp *Datapath) Host() *Host { return dp.host }

// Links implements datapath.LinkSource: the host's interfaces.
func (dp *Datapath) Links(ctx context.Context) ([]datapath.Link, error) { return dp.host.Links(ctx) }

// WatchLinks implements datapath.LinkSource.
func (dp *Datapath) WatchLinks(ctx context.Context, fn func(datapath.LinkEvent)) error {
	return dp.host.WatchLinks(ctx, fn)
}

func (p *port) lostCount() uint64 { return p.iface.rxLost.Load() - p.lostBase }

func (dp *Datapath) now() int64 { return int64(time.Since(dp.epoch)) }

func (dp *Datapath) drop(reason string, n uint64) { dp.drops[reason].Add(n) }

// AddPort implements datapath.Datapath.
func (dp *Datapath) AddPort(cfg datapath.PortConfig) error {
	if cfg.MTU <= 0 {
		cfg.MTU = 1500
	}
	switch {
	case cfg.PortID == "" || cfg.Interface == "":
		return errors.New("datapath: add port: PortID and Interface are required")
	case cfg.TunnelKey != 0 && packet.ReservedTunnelKey(cfg.TunnelKey):
		return fmt.Errorf("datapath: add port %s: tunnel key %d is reserved for the agents' own packets", cfg.PortID, cfg.TunnelKey)
	case cfg.TunnelKey > packet.MaxTunnelKey:
		return fmt.Errorf("datapath: add port %s: tunnel key %d does not fit in 24 bits", cfg.PortID, cfg.TunnelKey)
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed.Load() {
		return datapath.ErrClosed
	}
	ps := dp.ports.Load()
	for _, q := range ps.list {
		clash := ""
		switch {
		case q.cfg.PortID == cfg.PortID:
			clash = "already attached"
		case q.cfg.Index == cfg.Index:
			clash = fmt.Sprintf("index %d already used by port %s", cfg.Index, q.cfg.PortID)
		case cfg.TunnelKey != 0 && q.cfg.TunnelKey == cfg.TunnelKey:
			clash = fmt.Sprintf("tunnel key %d already used by port %s", cfg.TunnelKey, q.cfg.PortID)
		case q.cfg.Interface == cfg.Interface:
			clash = fmt.Sprintf("interface %s already bound to port %s", cfg.Interface, q.cfg.PortID)
		}
		if clash != "" {
			return fmt.Errorf("datapath: add port %s: %s", cfg.PortID, clash)
		}
	}
	iface, ok := dp.host.Interface(cfg.Interface)
	if !ok {
		return fmt.Errorf("datapath: add port %s: %w: %s", cfg.PortID, ErrNoInterface, cfg.Interface)
	}
	p := &port{cfg: cfg, iface: iface, quit: make(chan struct{}), lostBase: iface.rxLost.Load()}
	dp.ports.Store(newPortSet(append(slices.Clip(ps.list), p)))
	if dp.run != nil {
		dp.startReader(p)
	}
	return nil
}

// RemovePort implements datapath.Datapath. It does not wait for the
// port's reader, so a miss handler running on it may call it.
func (dp *Datapath) RemovePort(portID string) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	ps := dp.ports.Load()
	i := slices.IndexFunc(ps.list, func(p *port) bool { return p.cfg.PortID == portID })
	if i < 0 {
		return fmt.Errorf("%w %s", datapath.ErrUnknownPort, portID)
	}
	p := ps.list[i]
	dp.ports.Store(newPortSet(slices.Delete(slices.Clone(ps.list), i, i+1)))
	dp.detach(p)
	return nil
}

// detach stops a port that left the port set; dp.mu is held.
func (dp *Datapath) detach(p *port) {
	p.gone.Store(true)
	close(p.quit)
	dp.lost.Add(p.lostCount())
	dp.table.removePort(p)
}

// Run implements datapath.Datapath: its goroutines (a reader per port,
// the tunnel receiver, the expiry) follow a context that ends with ctx or
// Close.
func (dp *Datapath) Run(ctx context.Context, h datapath.MissHandler) error {
	if h == nil {
		return errors.New("datapath: Run needs a MissHandler")
	}
	dp.mu.Lock()
	if err := dp.runnable(); err != nil {
		dp.mu.Unlock()
		return err
	}
	dp.run, dp.stop = context.WithCancel(ctx)
	dp.handler = h
	dp.state, _ = h.(datapath.StateHandler)
	dp.probe, _ = h.(datapath.ProbeHandler)
	for _, p := range dp.ports.Load().list {
		dp.startReader(p)
	}
	run := dp.run
	dp.wg.Add(2)
	go dp.tunnelLoop(run)
	go dp.expiryLoop(run)
	dp.mu.Unlock()

	<-run.Done()
	err := dp.Close()
	dp.wg.Wait()
	return err
}

// runnable says why Run may not start; dp.mu is held.
func (dp *Datapath) runnable() error {
	switch {
	case dp.closed.Load():
		return datapath.ErrClosed
	case dp.run != nil:
		return datapath.ErrRunning
	}
	return nil
}

// startReader starts p's receiver; dp.mu is held and Run has started.
func (dp *Datapath) startReader(p *port) {
	if !p.started {
		p.started = true
		dp.wg.Add(1)
		go dp.readLoop(dp.run, p)
	}
}

// Close implements datapath.Datapath. It does not wait for Run's
// goroutines (Run does), so that a miss handler may call it.
func (dp *Datapath) Close() error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed.Swap(true) {
		return nil
	}
	if dp.stop != nil {
		dp.stop()
	}
	for _, p := range dp.ports.Load().list {
		dp.detach(p)
	}
	dp.ports.Store(newPortSet(nil))
	if t := dp.tun.Swap(&tunnels{}); t.bound {
		dp.host.hub.unbind(t.cfg.LocalIP, dp.ep)
	}
	return nil
}

// expiryLoop removes idle flows, every quarter of the shortest timeout.
func (dp *Datapath) expiryLoop(ctx context.Context) {
	defer dp.wg.Done()
	period := slices.Min(dp.flows.IdleTimeout[:])
	t := time.NewTicker(min(max(period/4, 10*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			dp.table.expire(dp.now())
		}
	}
}

// Stats implements datapath.Datapath.
func (dp *Datapath) Stats() datapath.Stats {
	s := datapath.Stats{Hits: dp.hits.Load(), Misses: dp.misses.Load(), Lost: dp.lost.Load(), Drops: map[string]uint64{}}
	for _, p := range dp.ports.Load().list {
		s.Lost += p.lostCount()
		s.Ports = append(s.Ports, datapath.PortStats{PortID: p.cfg.PortID, Index: p.cfg.Index, Interface: p.cfg.Interface,
			RxPackets: p.rxPackets.Load(), RxBytes: p.rxBytes.Load(), TxPackets: p.txPackets.Load(), TxBytes: p.txBytes.Load(),
			RxDropped: p.lostCount(), TxDropped: p.txDropped.Load()})
	}
	slices.SortFunc(s.Ports, func(a, b datapath.PortStats) int { return strings.Compare(a.PortID, b.PortID) })
	for r, n := range dp.drops {
		if v := n.Load(); v > 0 {
			s.Drops[r] = v
		}
	}
	if s.Lost > 0 {
		s.Drops[datapath.DropRxRingFull] = s.Lost
	}
	for d := range dp.malformed {
		if v := dp.malformed[d].Load(); v > 0 {
			s.Drops[datapath.MalformedDrop(packet.Drop(d))] += v
		}
	}
	dp.tunMu.Lock()
	s.VXLAN, s.GRE = dp.tunStats[0], dp.tunStats[1]
	dp.tunMu.Unlock()
	dp.table.stats(&s)
	return s
}
