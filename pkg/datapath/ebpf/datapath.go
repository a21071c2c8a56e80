//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/perf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/mirrorsock"
	"github.com/nagare/nagare/pkg/netns"
)

// Options are the settings specific to the kernel datapath.
type Options struct {
	// Attach picks TCX or clsact (default: TCX where the kernel has it).
	Attach AttachMode
	// UpcallBuffer is the size of each CPU's upcall ring in bytes
	// (default 1 MiB): what absorbs a burst of misses while the agent
	// simulates.
	UpcallBuffer int
	// PinDir, if set, is where maps and links are pinned
	// (/sys/fs/bpf/nagare/<host>): Close then leaves the datapath
	// forwarding, and the next New with the same PinDir adopts it (pin.go).
	PinDir string
	// AdoptGrace is how long adopted flows forward before they are
	// removed unless installed again (default 30 s).
	AdoptGrace time.Duration
	// ConntrackMax is the capacity of the kernel's connection map
	// (default DefaultConntrackMax); beyond it the least recently used
	// connections are dropped, and their flows ask the agent again.
	ConntrackMax int
}

// port is an attached interface.
type port struct {
	cfg     datapath.PortConfig
	slot    uint32
	ifindex int
	peer    bool // a veth whose peer is in another namespace: redirect_peer
	att     *attachment
	qos     datapath.PortQoS // its limits, as in the policers map; guarded by Datapath.mu

	upq   chan *upcallItem // upcalls for its miss goroutine
	batch batcher          // its miss goroutine's queued kernel writes (batch.go)
	gone  atomic.Bool
	done  chan struct{} // closed when its miss goroutine has exited; nil if none started
}

// portSet is an immutable snapshot of the attached ports, replaced on
// AddPort and RemovePort, so that upcall dispatch and Execute look ports
// up without locks.
type portSet struct {
	byID    map[string]*port
	byIndex map[int32]*port
	byKey   map[uint32]*port
	byIf    map[string]*port
	bySlot  map[uint32]*port
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
	n := &portSet{byID: map[string]*port{}, byIndex: map[int32]*port{}, byKey: map[uint32]*port{}, byIf: map[string]*port{}, bySlot: map[uint32]*port{}}
	for _, p := range ps.byID {
		n.add(p)
	}
	return n
}

func (ps *portSet) add(p *port) {
	ps.byID[p.cfg.PortID], ps.byIndex[p.cfg.Index], ps.byIf[p.cfg.Interface], ps.bySlot[p.slot] = p, p, p, p
	if p.cfg.TunnelKey != 0 { // no key: not reached through tunnels
		ps.byKey[p.cfg.TunnelKey] = p
	}
}

func (ps *portSet) remove(p *port) {
	delete(ps.byID, p.cfg.PortID)
	delete(ps.byIndex, p.cfg.Index)
	if ps.byKey[p.cfg.TunnelKey] == p {
		delete(ps.byKey, p.cfg.TunnelKey)
	}
	delete(ps.byIf, p.cfg.Interface)
	delete(ps.bySlot, p.slot)
}

// Datapath is the kernel (eBPF) implementation of datapath.Datapath.
type Datapath struct {
	cfg   datapath.Config
	opts  Options
	flows datapath.FlowConfig
	log   *slog.Logger
	nl    *netlink.Handle
	objs  datapathObjects
	mode  AttachMode // resolved by the first attachment

	// mu serialises every change: ports, tunnels, the flow table and the
	// action lists. The kernel forwards without it; upcall dispatch and
	// Execute read the port snapshot.
	mu      sync.Mutex
	ports   atomic.Pointer[portSet]
	table   flowTable
	lists   actionLists
	tun     tunnels
	kcfg    kernelConfig // the config map's one entry, as last written
	ct      conntrack
	ctBytes int // kernel memory per connection-map entry
	inj     *injector
	reader  *perf.Reader // upcalls: a wakeup per record, while the reader sleeps
	// batchReader reads upcalls_batch: a wakeup per upcallBatchWakeup
	// records, while the reader is awake (upcall.go).
	batchReader *perf.Reader
	handler     datapath.MissHandler
	state       datapath.StateHandler
	probe       datapath.ProbeHandler
	running     bool
	closed      bool
	stop        chan struct{}
	wg          sync.WaitGroup

	// Adoption of a predecessor's pinned datapath (pin.go).
	adopted       bool
	adoptedSlots  map[uint32]uint32 // ifindex -> slot found pinned
	adoptedPorts  []datapath.AdoptedPort
	adoptDeadline time.Time
	stale         []string // pin directories of other layouts
	destroy       bool     // Close removes the pins too

	drops    dropCounters // drops seen by the agent side (upcalls, Execute)
	perfLost atomic.Uint64
	lateHits atomic.Uint64 // misses that found their flow installed by the time the agent read them
	vxState  stateCounters
	greState stateCounters
	vxProbe  stateCounters
	greProbe stateCounters
	flushing flushBufs     // flushInstalls' (batch.go), under mu
	vxEcho   stateCounters // echo requests the agent answered (the kernel answers most itself)
	greEcho  stateCounters
	greTx    struct{ packets, bytes, errors atomic.Uint64 } // GRE the agent sent itself
	keyWarn  sync.Once
	mirror   *mirrorsock.Sender // mirrors' copies (execute.go)
}

type stateCounters struct{ rx, tx atomic.Uint64 }

var (
	_ datapath.Datapath    = (*Datapath)(nil)
	_ datapath.PortAdopter = (*Datapath)(nil)
)

// New loads the programs and maps, creates the injection device that
// carries Execute's frames and starts collecting upcalls. Ports and
// tunnels may be configured before or after Run.
func New(cfg datapath.Config, opts Options) (*Datapath, error) {
	if opts.UpcallBuffer <= 0 {
		opts.UpcallBuffer = 1 << 20
	}
	if opts.AdoptGrace <= 0 {
		opts.AdoptGrace = 30 * time.Second
	}
	if opts.ConntrackMax <= 0 {
		opts.ConntrackMax = DefaultConntrackMax
	}
	dp := &Datapath{cfg: cfg, opts: opts, flows: cfg.Flows.WithDefaults(), log: cfg.Logger, stop: make(chan struct{}),
		mirror: mirrorsock.New(cfg.Netns)}
	if dp.log == nil {
		dp.log = slog.Default()
	}
	if dp.flows.MaxFlows > 1<<24 {
		return nil, fmt.Errorf("datapath: max flows %d: at most %d", dp.flows.MaxFlows, 1<<24)
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("datapath: %w", err)
	}
	if err := dp.openNetlink(); err != nil {
		return nil, err
	}
	if err := dp.load(); err != nil {
		dp.nl.Close()
		return nil, err
	}
	dp.table.init()
	dp.lists.init(dp.objs.Actions)
	dp.ct.init(dp.opts.ConntrackMax)
	if err := dp.initConfig(); err != nil {
		dp.objs.Close()
		dp.nl.Close()
		return nil, fmt.Errorf("datapath: %w", err)
	}
	dp.ports.Store((&portSet{}).clone())
	if len(dp.stale) > 0 {
		// Old layouts' links are taken over as interfaces are attached;
		// their pins go at the end of the grace period.
		dp.adoptDeadline = time.Now().Add(opts.AdoptGrace)
	}
	if dp.adopted {
		if err := dp.adopt(); err != nil {
			dp.objs.Close()
			dp.nl.Close()
			return nil, fmt.Errorf("datapath: %w", err)
		}
	}
	var err error
	if dp.inj, err = newInjector(dp); err != nil {
		dp.objs.Close()
		dp.nl.Close()
		return nil, err
	}
	if err := dp.openReaders(); err != nil {
		dp.inj.close(dp)
		dp.objs.Close()
		dp.nl.Close()
		return nil, fmt.Errorf("datapath: upcall reader: %w", err)
	}
	return dp, nil
}

func (dp *Datapath) openNetlink() error {
	ns, err := netns.Open(dp.cfg.Netns)
	if err != nil {
		return fmt.Errorf("datapath: %w", err)
	}
	defer ns.Close()
	if dp.nl, err = netns.Netlink(ns); err != nil {
		return fmt.Errorf("datapath: %w", err)
	}
	return nil
}

// load loads the collection with the flow table sized for MaxFlows.
func (dp *Datapath) load() error {
	spec, err := loadDatapath()
	if err != nil {
		return fmt.Errorf("datapath: %w", err)
	}
	// Action lists are shared, so there are at most as many as flows.
	spec.Maps[datapathMapFlows].MaxEntries = uint32(dp.flows.MaxFlows)
	spec.Maps[datapathMapActions].MaxEntries = uint32(dp.flows.MaxFlows)
	spec.Maps[datapathMapCt].MaxEntries = uint32(dp.opts.ConntrackMax)
	if dp.opts.PinDir != "" {
		dp.adopted, err = dp.loadPinned(spec)
	} else {
		err = spec.LoadAndAssign(&dp.objs, nil)
	}
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			return fmt.Errorf("datapath: the kernel refused the programs: %+v", ve)
		}
		return fmt.Errorf("datapath: load programs: %w", err)
	}
	return nil
}

// inNetns runs fn inside the datapath's network namespace.
func (dp *Datapath) inNetns(fn func() error) error { return netns.DoPath(dp.cfg.Netns, fn) }

// attach attaches a program to an interface's ingress in the datapath's
// namespace, with the mode chosen at New (resolved on first use).
func (dp *Datapath) attach(ifindex int, prog *ebpf.Program, name string) (*attachment, error) {
	var a *attachment
	err := dp.inNetns(func() (err error) {
		if dp.opts.PinDir != "" && dp.opts.Attach != AttachClsact {
			if a = dp.adoptLink(ifindex, prog, name); a != nil {
				return nil
			}
		}
		if a, err = attachIngress(dp.opts.Attach, dp.nl, ifindex, prog, name); err != nil {
			return err
		}
		if dp.opts.PinDir != "" && a.link != nil {
			a.pin = dp.linkPin(ifindex, name)
			if err := a.link.Pin(a.pin); err != nil {
				a.pin = ""
				return errors.Join(fmt.Errorf("pin %s: %w", name, err), a.detach(dp.nl))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("datapath: %w", err)
	}
	if dp.opts.Attach == AttachAuto {
		dp.opts.Attach = a.mode // every interface the same way
	}
	return a, nil
}

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
	l, err := dp.nl.LinkByName(cfg.Interface)
	if err != nil {
		return fmt.Errorf("datapath: add port %s: interface %s: %w", cfg.PortID, cfg.Interface, err)
	}
	slot, ok := dp.adoptedSlots[uint32(l.Attrs().Index)]
	if !ok || ps.bySlot[slot] != nil {
		slot, ok = freeSlot(ps, dp.adoptedSlots)
	}
	if !ok {
		return fmt.Errorf("datapath: add port %s: all %d port slots in use", cfg.PortID, maxPorts-1)
	}
	p := &port{cfg: cfg, slot: slot, ifindex: l.Attrs().Index, upq: make(chan *upcallItem, upcallQueue)}
	// bpf_redirect_peer hands a frame straight to the other end of a
	// veth, skipping a pass through the backlog queue; the kernel allows
	// it only into another namespace.
	p.peer = l.Type() == "veth" && l.Attrs().NetNsID >= 0
	if err := dp.publishPort(p); err != nil {
		dp.unpublishPort(p)
		return fmt.Errorf("datapath: add port %s: %w", cfg.PortID, err)
	}
	if p.att, err = dp.attach(p.ifindex, dp.objs.PortIn, "port_in"); err != nil {
		dp.unpublishPort(p)
		return fmt.Errorf("datapath: add port %s: %w", cfg.PortID, err)
	}
	n := ps.clone()
	n.add(p)
	dp.ports.Store(n)
	if dp.running {
		dp.startMissLoop(p)
	}
	return nil
}

// freeSlot returns the lowest unused port slot; 0 is never used, so that a
// zeroed action cannot name a port.
func freeSlot(ps *portSet, reserved map[uint32]uint32) (uint32, bool) {
	taken := make(map[uint32]bool, len(reserved))
	for _, s := range reserved {
		taken[s] = true // an adopted port's, while it may come back
	}
	for s := uint32(1); s < maxPorts; s++ {
		if ps.bySlot[s] == nil && !taken[s] {
			return s, true
		}
	}
	return 0, false
}

// publishPort writes the port into the kernel's maps.
func (dp *Datapath) publishPort(p *port) error {
	var flags uint32
	if p.peer {
		flags = portPeer
	}
	// As the userspace datapath's receive buffers: the IP MTU, an
	// Ethernet header and two VLAN tags.
	info := portInfo{Ifindex: uint32(p.ifindex), Index: p.cfg.Index, TunnelKey: p.cfg.TunnelKey, Flags: flags,
		MaxLen: uint32(p.cfg.MTU) + 14 + 8, Mtu: uint32(p.cfg.MTU)}
	zero := make([]portCounters, ebpf.MustPossibleCPU())
	if err := dp.objs.PortStats.Put(p.slot, zero); err != nil {
		return fmt.Errorf("reset port counters: %w", err)
	}
	// No limits until SetPortQoS: a slot's buckets may be another
	// port's, or a predecessor's (pinned) for a port whose policy has
	// gone since.
	if err := dp.writePolicers(p.slot, datapath.PortQoS{}); err != nil {
		return err
	}
	if err := dp.objs.Ports.Put(p.slot, &info); err != nil {
		return fmt.Errorf("write port: %w", err)
	}
	if err := dp.objs.PortSlots.Put(uint32(p.ifindex), p.slot); err != nil {
		return fmt.Errorf("write port slot: %w", err)
	}
	if p.cfg.TunnelKey == 0 { // not reached through tunnels
		return nil
	}
	if err := dp.objs.TunnelKeys.Put(p.cfg.TunnelKey, p.slot); err != nil {
		return fmt.Errorf("write tunnel key: %w", err)
	}
	return nil
}

// unpublishPort removes the port from the kernel's maps; entries that
// are not there are fine.
func (dp *Datapath) unpublishPort(p *port) error {
	var errs []error
	del := func(m *ebpf.Map, k any) {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	del(dp.objs.PortSlots, uint32(p.ifindex))
	if cur, err := dp.tunnelKeySlot(p.cfg.TunnelKey); p.cfg.TunnelKey != 0 && err == nil && cur == p.slot {
		del(dp.objs.TunnelKeys, p.cfg.TunnelKey)
	}
	if err := dp.objs.Ports.Put(p.slot, &portInfo{}); err != nil {
		errs = append(errs, err)
	}
	if err := dp.writePolicers(p.slot, datapath.PortQoS{}); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (dp *Datapath) tunnelKeySlot(key uint32) (uint32, error) {
	var s uint32
	err := dp.objs.TunnelKeys.Lookup(key, &s)
	return s, err
}

// RemovePort implements datapath.Datapath. It does not wait for the
// port's miss goroutine, so that it can be called from a miss handler.
func (dp *Datapath) RemovePort(portID string) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	ps := dp.ports.Load()
	p := ps.byID[portID]
	if p == nil {
		return fmt.Errorf("%w %s", datapath.ErrUnknownPort, portID)
	}
	n := ps.clone()
	n.remove(p)
	dp.ports.Store(n)
	p.gone.Store(true)
	var errs []error
	if err := dp.inNetns(func() error { return p.att.detach(dp.nl) }); err != nil {
		errs = append(errs, err)
	}
	dp.table.removePortFlows(dp, p)
	if err := dp.unpublishPort(p); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("datapath: remove port %s: %w", portID, err)
	}
	return nil
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
		dp.startMissLoop(p)
	}
	dp.wg.Add(2)
	go dp.readUpcalls()
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

// Close implements datapath.Datapath: it detaches every program and
// removes the devices it created. It does not wait for the goroutines
// Run started (Run does), so that it is safe to call from a miss handler.
func (dp *Datapath) Close() error {
	dp.mu.Lock()
	if dp.closed {
		dp.mu.Unlock()
		return nil
	}
	dp.closed = true
	close(dp.stop)
	// With pins, the kernel goes on forwarding for a successor: links are
	// released, not detached, and the devices stay.
	persist := dp.opts.PinDir != "" && !dp.destroy
	ps := dp.ports.Load()
	dp.ports.Store((&portSet{}).clone())
	var errs []error
	for _, p := range ps.byID {
		p.gone.Store(true)
		if persist {
			errs = append(errs, p.att.release())
		} else if err := dp.inNetns(func() error { return p.att.detach(dp.nl) }); err != nil {
			errs = append(errs, err)
		}
	}
	if persist {
		errs = append(errs, dp.tun.release())
	} else {
		errs = append(errs, dp.tun.close(dp))
	}
	errs = append(errs, dp.inj.close(dp), dp.reader.Close(), dp.batchReader.Close(), dp.mirror.Close())
	dp.mu.Unlock()
	// The programs and maps go when the last reference does: the
	// detached links held the programs, the programs the maps.
	errs = append(errs, dp.objs.Close())
	dp.nl.Close()
	return errors.Join(errs...)
}

func (dp *Datapath) isClosed() bool {
	select {
	case <-dp.stop:
		return true
	default:
		return false
	}
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
			dp.finishAdoption()
			if err := dp.expire(); err != nil && !dp.isClosed() {
				dp.log.Warn("datapath: flow expiry", "err", err)
			}
		}
	}
}

// Stats implements datapath.Datapath.
func (dp *Datapath) Stats() datapath.Stats {
	var s datapath.Stats
	if dp.isClosed() {
		return s
	}
	c := dp.counters()
	late := dp.lateHits.Load()
	s.Hits, s.Misses = c[cHits]+late, c[cMisses]-min(c[cMisses], late)
	s.Lost = c[cLost] + dp.perfLost.Load() + dp.drops.get(datapath.DropRxRingFull)
	s.VXLAN = datapath.TunnelStats{RxPackets: c[cVXLANRxPackets], RxBytes: c[cVXLANRxBytes], TxPackets: c[cVXLANTxPackets],
		TxBytes: c[cVXLANTxBytes], TxErrors: c[cVXLANTxErrors], StateRx: dp.vxState.rx.Load(), StateTx: dp.vxState.tx.Load(),
		ProbeRx: dp.vxProbe.rx.Load(), ProbeTx: dp.vxProbe.tx.Load(), Echoes: c[cVXLANEchoes] + dp.vxEcho.tx.Load()}
	s.GRE = datapath.TunnelStats{RxPackets: c[cGRERxPackets], RxBytes: c[cGRERxBytes], TxPackets: c[cGRETxPackets] + dp.greTx.packets.Load(),
		TxBytes: c[cGRETxBytes] + dp.greTx.bytes.Load(), TxErrors: c[cGRETxErrors] + dp.greTx.errors.Load(),
		StateRx: dp.greState.rx.Load(), StateTx: dp.greState.tx.Load(),
		ProbeRx: dp.greProbe.rx.Load(), ProbeTx: dp.greProbe.tx.Load(), Echoes: c[cGREEchoes] + dp.greEcho.tx.Load()}
	for _, p := range dp.ports.Load().byID {
		pc := dp.portCounters(p.slot)
		s.Ports = append(s.Ports, datapath.PortStats{PortID: p.cfg.PortID, Index: p.cfg.Index, Interface: p.cfg.Interface,
			RxPackets: pc.RxPackets, RxBytes: pc.RxBytes, TxPackets: pc.TxPackets, TxBytes: pc.TxBytes})
	}
	sort.Slice(s.Ports, func(i, j int) bool { return s.Ports[i].PortID < s.Ports[j].PortID })
	s.Drops = dp.kernelDrops()
	dp.drops.addTo(s.Drops)
	if n := dp.perfLost.Load(); n > 0 {
		s.Drops[datapath.DropRxRingFull] += n
	}
	dp.table.stats(&s)
	return s
}

// counters sums the per-CPU counters.
func (dp *Datapath) counters() [numCounters]uint64 {
	var out [numCounters]uint64
	var vals []uint64
	for i := range out {
		if err := dp.objs.Counters.Lookup(uint32(i), &vals); err != nil {
			continue
		}
		for _, v := range vals {
			out[i] += v
		}
	}
	return out
}

func (dp *Datapath) kernelDrops() map[string]uint64 {
	drops := map[string]uint64{}
	var vals []uint64
	for r := 1; r < numDrops; r++ {
		if err := dp.objs.Drops.Lookup(uint32(r), &vals); err != nil {
			continue
		}
		var n uint64
		for _, v := range vals {
			n += v
		}
		if n > 0 {
			drops[dropName(r)] += n
		}
	}
	return drops
}

func (dp *Datapath) portCounters(slot uint32) portCounters {
	var vals []portCounters
	var sum portCounters
	if err := dp.objs.PortStats.Lookup(slot, &vals); err != nil {
		return sum
	}
	for _, v := range vals {
		sum.RxPackets += v.RxPackets
		sum.RxBytes += v.RxBytes
		sum.TxPackets += v.TxPackets
		sum.TxBytes += v.TxBytes
	}
	return sum
}

// monoNow is the clock of bpf_ktime_get_ns: CLOCK_MONOTONIC. Go's
// monotonic clock is the same one, read through the vDSO, so after one
// system call at start monoNow costs no more than time.Now.
func monoNow() uint64 { return monoBase + uint64(time.Since(monoStart)) }

var monoBase, monoStart = func() (uint64, time.Time) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano()), time.Now()
}()

// wallOf converts a CLOCK_MONOTONIC time to wall time.
func wallOf(mono uint64) time.Time {
	return time.Now().Add(-time.Duration(monoNow() - mono))
}
