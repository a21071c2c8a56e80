//go:build linux

package userspace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/afpacket"
	"github.com/nagare/nagare/pkg/datapath/mirrorsock"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/netns"
	"github.com/nagare/nagare/pkg/offload"
)

// portIO is the frame I/O of one bound interface: an *afpacket.Port in
// production, an in-memory fake in the hit-path benchmark and alloc test.
type portIO interface {
	Receive(b *afpacket.Batch) (int, error)
	Write(frames [][]byte, hdrs []offload.Hdr) (int, error)
	Stats() afpacket.Stats
	Close() error
}

// port is an attached interface and the flows entering by it. Giving each
// port its own flow map means the only goroutine reading a map on the hit
// path is that port's reader: lookups never contend with another reader
// for the shard lock's cache line, and detaching a port drops its flows
// with the map.
type port struct {
	cfg datapath.PortConfig
	io  portIO

	flowMu sync.RWMutex // guards flows; writers also hold Datapath.mu
	flows  map[flow.Key]*flowEntry

	gone atomic.Bool   // detached: outputs to it count as port-gone
	done chan struct{} // closed when its reader has exited; nil if none started

	rxPackets, rxBytes atomic.Uint64
	txPackets, txBytes atomic.Uint64
	hits, misses       atomic.Uint64
	drops              dropCounters // drops seen by this port's reader
	slotSize           int
	readerStarted      bool // guarded by Datapath.mu

	qos                   datapath.PortQoS // guarded by Datapath.mu
	egressPol, ingressPol atomic.Pointer[datapath.Policer]
}

// portSet is an immutable snapshot of the attached ports, replaced on
// AddPort and RemovePort, so that the tunnel receivers, Execute and action
// compilation look ports up without locks.
type portSet struct {
	byID    map[string]*port
	byIndex map[int32]*port
	byKey   map[uint32]*port
	byIf    map[string]*port
}

// Datapath is the userspace implementation of datapath.Datapath.
type Datapath struct {
	cfg   datapath.Config
	flows datapath.FlowConfig
	log   *slog.Logger
	epoch time.Time // lastUsed times are nanoseconds since epoch (monotonic)

	// mu serialises every change: ports, tunnels, the flow table (its
	// install-order list, tag index and counters). Readers of the hit
	// path never take it.
	mu    sync.Mutex
	ports atomic.Pointer[portSet]
	tun   atomic.Pointer[tunnelState]
	// underlayMTU is the MTU of the interface holding the tunnel
	// endpoint's address (0: unknown), which bounds the segments of
	// super-frames sent over tunnels.
	underlayMTU atomic.Int32
	table       table
	handler     datapath.MissHandler
	state       datapath.StateHandler // handler, if it takes flow-state packets
	probe       datapath.ProbeHandler // handler, if it takes probes
	running     bool
	closed      bool
	stop        chan struct{} // closed by Close
	wg          sync.WaitGroup

	drops   dropCounters // drops outside port readers: tunnels, Execute
	vxlan   tunnelCounters
	gre     tunnelCounters
	retired retiredCounters // counters of detached ports, so totals never go back

	execPool sync.Pool // *worker for Execute
	mirror   *mirrorsock.Sender
}

// retiredCounters keeps what detached ports counted.
type retiredCounters struct {
	hits, misses, lost, rxOversize, txErrors atomic.Uint64
}

var _ datapath.Datapath = (*Datapath)(nil)

// New returns a datapath with no ports and tunnels off. Ports and tunnels
// may be configured before or after Run.
func New(cfg datapath.Config) (*Datapath, error) {
	dp := &Datapath{
		cfg:   cfg,
		flows: cfg.Flows.WithDefaults(),
		log:   cfg.Logger,
		epoch: time.Now(),
		stop:  make(chan struct{}),
	}
	if dp.log == nil {
		dp.log = slog.Default()
	}
	if cfg.Netns != "" {
		if err := unix.Access(cfg.Netns, unix.R_OK); err != nil {
			return nil, fmt.Errorf("datapath: network namespace %s: %w", cfg.Netns, err)
		}
	}
	dp.table.init(dp)
	dp.ports.Store(&portSet{byID: map[string]*port{}, byIndex: map[int32]*port{}, byKey: map[uint32]*port{}, byIf: map[string]*port{}})
	dp.tun.Store(&tunnelState{})
	dp.mirror = mirrorsock.New(cfg.Netns)
	dp.execPool.New = func() any { return newWorker(dp, nil, 1, minSlotSize) }
	return dp, nil
}

// now returns the datapath clock: nanoseconds since New, monotonic.
func (dp *Datapath) now() int64 { return int64(time.Since(dp.epoch)) }

func (dp *Datapath) wallTime(t int64) time.Time { return dp.epoch.Add(time.Duration(t)) }

// AddPort implements datapath.Datapath.
func (dp *Datapath) AddPort(cfg datapath.PortConfig) error {
	if err := cfg.Check(); err != nil {
		return err
	}
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return datapath.ErrClosed
	}
	ps := dp.ports.Load()
	if err := ps.lookup().Clash(&cfg); err != nil {
		return err
	}
	var (
		ap  *afpacket.Port
		err error
	)
	opts := portOptions(cfg.MTU)
	if dp.cfg.Netns != "" {
		ap, err = afpacket.OpenInNetns(dp.cfg.Netns, cfg.Interface, opts)
	} else {
		ap, err = afpacket.Open(cfg.Interface, opts)
	}
	if err != nil {
		return fmt.Errorf("datapath: add port %s: %w", cfg.PortID, err)
	}
	dp.attach(cfg, ap)
	return nil
}

// Receive tuning of a port (afpacket.Options): offload state on, ring slots
// that hold the port's ordinary frames, and wakeups moderated under load.
// No busy polling: on a host shared by many ports (and other work), a spin
// after every frame costs more CPU than the wakeup it saves.
const portModeration = 50 * time.Microsecond

func portOptions(mtu int) afpacket.Options {
	return afpacket.Options{VnetHdr: true, FrameSize: afpacket.FrameSizeFor(mtu), Moderation: portModeration}
}

// attach registers a port whose I/O is open; dp.mu is held.
func (dp *Datapath) attach(cfg datapath.PortConfig, io portIO) *port {
	p := &port{cfg: cfg, io: io, flows: map[flow.Key]*flowEntry{}, slotSize: slotSizeFor(cfg.MTU)}
	ps := dp.ports.Load().clone()
	ps.add(p)
	dp.ports.Store(ps)
	if dp.running {
		dp.startReader(p)
	}
	return p
}

// lookup finds ports for datapath.PortLookup's clash checks.
func (ps *portSet) lookup() datapath.PortLookup {
	cfg := func(p *port) *datapath.PortConfig {
		if p == nil {
			return nil
		}
		return &p.cfg
	}
	return datapath.PortLookup{
		ByID:        func(id string) *datapath.PortConfig { return cfg(ps.byID[id]) },
		ByIndex:     func(i int32) *datapath.PortConfig { return cfg(ps.byIndex[i]) },
		ByTunnelKey: func(k uint32) *datapath.PortConfig { return cfg(ps.byKey[k]) },
		ByInterface: func(n string) *datapath.PortConfig { return cfg(ps.byIf[n]) },
	}
}

func (ps *portSet) clone() *portSet {
	n := &portSet{
		byID: make(map[string]*port, len(ps.byID)+1), byIndex: make(map[int32]*port, len(ps.byID)+1),
		byKey: make(map[uint32]*port, len(ps.byID)+1), byIf: make(map[string]*port, len(ps.byID)+1),
	}
	for _, p := range ps.byID {
		n.add(p)
	}
	return n
}

// add indexes p; a port without a tunnel key (0) is not reached by one.
func (ps *portSet) add(p *port) {
	ps.byID[p.cfg.PortID], ps.byIndex[p.cfg.Index], ps.byIf[p.cfg.Interface] = p, p, p
	if p.cfg.TunnelKey != 0 {
		ps.byKey[p.cfg.TunnelKey] = p
	}
}

// RemovePort implements datapath.Datapath. It does not wait for the port's
// reader to finish the batch it may be processing, so that it can be called
// from a miss handler running on that reader.
func (dp *Datapath) RemovePort(portID string) error {
	dp.mu.Lock()
	ps := dp.ports.Load()
	p := ps.byID[portID]
	if p == nil {
		dp.mu.Unlock()
		return fmt.Errorf("%w %s", datapath.ErrUnknownPort, portID)
	}
	n := ps.clone()
	delete(n.byID, portID)
	delete(n.byIndex, p.cfg.Index)
	if p.cfg.TunnelKey != 0 {
		delete(n.byKey, p.cfg.TunnelKey)
	}
	delete(n.byIf, p.cfg.Interface)
	dp.ports.Store(n)
	p.gone.Store(true)
	dp.table.removePortFlows(p)
	dp.mu.Unlock()

	err := p.io.Close()
	dp.retire(p)
	if err != nil {
		return fmt.Errorf("datapath: remove port %s: %w", portID, err)
	}
	return nil
}

// retire folds a detached port's counters into the datapath totals.
func (dp *Datapath) retire(p *port) {
	st := p.io.Stats()
	dp.retired.hits.Add(p.hits.Load())
	dp.retired.misses.Add(p.misses.Load())
	dp.retired.lost.Add(st.RxDrops)
	dp.retired.rxOversize.Add(st.RxTruncated)
	dp.retired.txErrors.Add(st.TxErrors)
	dp.drops.addFrom(&p.drops)
}

// Run implements datapath.Datapath.
func (dp *Datapath) Run(ctx context.Context, h datapath.MissHandler) error {
	if h == nil {
		return errors.New("datapath: Run needs a MissHandler")
	}
	dp.mu.Lock()
	switch {
	case dp.closed:
		dp.mu.Unlock()
		return datapath.ErrClosed
	case dp.running:
		dp.mu.Unlock()
		return datapath.ErrRunning
	}
	dp.handler, dp.running = h, true
	dp.state, _ = h.(datapath.StateHandler)
	dp.probe, _ = h.(datapath.ProbeHandler)
	for _, p := range dp.ports.Load().byID {
		dp.startReader(p)
	}
	dp.tun.Load().start(dp)
	dp.wg.Add(1)
	go dp.expiryLoop()
	dp.mu.Unlock()

	select {
	case <-ctx.Done():
	case <-dp.stop:
	}
	err := dp.Close()
	dp.wg.Wait()
	return err
}

// startReader starts p's receiver; dp.mu is held and dp.running is true.
func (dp *Datapath) startReader(p *port) {
	if p.readerStarted {
		return
	}
	p.readerStarted = true
	p.done = make(chan struct{})
	dp.wg.Add(1)
	go dp.readLoop(p)
}

// Close implements datapath.Datapath. It does not wait for the goroutines
// Run started (Run does), so that it is safe to call from a miss handler.
func (dp *Datapath) Close() error {
	dp.mu.Lock()
	if dp.closed {
		dp.mu.Unlock()
		return nil
	}
	dp.closed = true
	close(dp.stop)
	ps := dp.ports.Load()
	dp.ports.Store(&portSet{byID: map[string]*port{}, byIndex: map[int32]*port{}, byKey: map[uint32]*port{}, byIf: map[string]*port{}})
	for _, p := range ps.byID {
		p.gone.Store(true)
		dp.table.removePortFlows(p)
	}
	ts := dp.tun.Swap(&tunnelState{})
	dp.mu.Unlock()

	var errs []error
	for _, p := range ps.byID {
		if err := p.io.Close(); err != nil {
			errs = append(errs, err)
		}
		dp.retire(p)
	}
	errs = append(errs, ts.close(), dp.mirror.Close())
	return errors.Join(errs...)
}

// expiryLoop removes idle flows. Its period is a quarter of the shortest
// idle timeout, so a flow lives at most 25% longer than its timeout.
func (dp *Datapath) expiryLoop() {
	defer dp.wg.Done()
	t := time.NewTicker(dp.flows.ExpiryPeriod())
	defer t.Stop()
	for {
		select {
		case <-dp.stop:
			return
		case <-t.C:
			dp.table.expire(dp.now())
		}
	}
}

// Stats implements datapath.Datapath.
func (dp *Datapath) Stats() datapath.Stats {
	var s datapath.Stats
	drops := map[string]uint64{}
	dp.drops.addTo(drops)
	s.Hits, s.Misses, s.Lost = dp.retired.hits.Load(), dp.retired.misses.Load(), dp.retired.lost.Load()
	rxOversize, txErrors := dp.retired.rxOversize.Load(), dp.retired.txErrors.Load()
	for _, p := range dp.ports.Load().byID {
		st := p.io.Stats()
		s.Ports = append(s.Ports, datapath.PortStats{
			PortID: p.cfg.PortID, Index: p.cfg.Index, Interface: p.cfg.Interface,
			RxPackets: p.rxPackets.Load(), RxBytes: p.rxBytes.Load(),
			TxPackets: p.txPackets.Load(), TxBytes: p.txBytes.Load(),
			RxDropped: st.RxDrops + st.RxTruncated, TxDropped: st.TxErrors,
		})
		s.Hits += p.hits.Load()
		s.Misses += p.misses.Load()
		s.Lost += st.RxDrops
		rxOversize += st.RxTruncated
		txErrors += st.TxErrors
		p.drops.addTo(drops)
	}
	sort.Slice(s.Ports, func(i, j int) bool { return s.Ports[i].PortID < s.Ports[j].PortID })
	for reason, n := range map[string]uint64{datapath.DropRxRingFull: s.Lost, datapath.DropRxOversize: rxOversize, datapath.DropTxError: txErrors} {
		if n > 0 {
			drops[reason] += n
		}
	}
	s.Drops = drops
	s.VXLAN, s.GRE = dp.vxlan.snapshot(), dp.gre.snapshot()
	dp.table.stats(&s)
	return s
}

// inNetns runs fn on an OS thread inside the datapath's network namespace
// (or directly, if it has none), so that sockets fn opens live there.
func (dp *Datapath) inNetns(fn func() error) error {
	if dp.cfg.Netns == "" {
		return fn()
	}
	return netns.DoPath(dp.cfg.Netns, fn)
}
