package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/datapath/ebpf"
)

// The datapath benchmark: every case built twice, once with Nagare (real
// nagare-server and nagare-agent processes, configured through the API) and
// once with the Linux kernel doing the same job as the baseline harness in
// shared/baseline does it, then measured side by side, window after window,
// with the same generator, sink and CPU placement.

// Cases.
const (
	CaseBridge = "bridge" // VM→VM on one bridge, one host (baseline B)
	CaseRouter = "router" // VM→router→VM, one host (baseline C)
	CaseVXLAN  = "vxlan"  // VM→VM on one bridge across two hosts over VXLAN (baseline E)
	CaseSNAT   = "snat"   // VM→router with source NAT→VM, one host (baseline D: nft masquerade)
)

// Cases lists every case, in report order.
var Cases = []string{CaseBridge, CaseRouter, CaseSNAT, CaseVXLAN}

// Sides.
const (
	SideNagare = "nagare"
	// SideEBPF is Nagare with the kernel (eBPF) datapath.
	SideEBPF   = "nagare-ebpf"
	SideKernel = "kernel"
)

// CPU placement modes of the pps windows. The generator is always pinned to
// CPU0, as in the baseline.
const (
	// Mode1CPU: everything on CPU0. Kernel: no RPS, so the whole path runs
	// in the generator's softirq on CPU0 (baseline "1cpu"). Nagare: the
	// agents are pinned to CPU0 too, sharing it with the generator.
	Mode1CPU = "1cpu"
	// ModeSplit: one generator core, one datapath core. Kernel: RPS on the
	// first datapath device moves the forwarding to CPU1 (baseline "rps").
	// Nagare: the agents are pinned to CPU1, no RPS: the generator's veth
	// hop and the AF_PACKET receive copy run in CPU0's softirq, the agent's
	// Go code and its transmits on CPU1 — the agent on its own core.
	ModeSplit = "split"
	// ModeSplitRPS: as ModeSplit, and RPS on Nagare's first device too, so
	// that the AF_PACKET receive also runs on CPU1. Unpaced, this shows
	// receive livelock: CPU1's softirq starves the agent.
	ModeSplitRPS = "split-rps"
	// ModeFree: no pinning, no RPS; for ping and iperf3, as in the baseline.
	ModeFree = "free"
)

// DatapathConfig tunes the datapath benchmark.
type DatapathConfig struct {
	Cases     []string      // of Cases
	Sides     []string      // SideNagare, SideEBPF, SideKernel (all by default)
	Modes     []string      // Mode1CPU, ModeSplit
	Reps      int           // repetitions of every window; the median is reported
	Warm, Dur time.Duration // warm-up and measurement window
	PingCount int           // echo requests per ping run (10 ms apart)
	Iperf     bool          // TCP single stream (iperf3)
	Ping      bool          // RTT
	// FlowCases and FlowModes select the flow-setup windows; FlowRates are
	// the offered new-flow rates (0: as fast as the generator goes).
	FlowCases []string
	FlowModes []string
	FlowRates []float64
	// MemFlows, if not 0, measures the agents' RSS holding that many
	// flows in the flow cases, filled at MemRate new flows per second.
	MemFlows int
	MemRate  float64
	// Sim runs the simulation's Go benchmark in SrcDir.
	Sim    bool
	SrcDir string
	// Baseline is shared/baseline: its udpgen and sink are compiled from
	// there. Empty or missing: the kernel side is skipped.
	Baseline string
	AgentBin string // nagare-agent
	SelfBin  string // nagare-bench, which runs the flow generator
	Quiet    Quiet
	// Profile names a directory: during the first pps window of each case,
	// side and mode, `perf record -a -g` samples the whole machine, and
	// summaries are written there.
	Profile string
}

// Quiet is the noise control, lib.sh's.
type Quiet struct {
	BusyPct    float64       // before a window, wait until the machine is at most this busy
	MaxWait    time.Duration // but no longer than this
	ForeignPct float64       // a window where other processes used more CPU than this (% of all CPUs) is noisy
	MaxTries   int           // windows per repetition before a noisy one is kept
}

// DefaultDatapathConfig is what `make bench` runs.
func DefaultDatapathConfig() DatapathConfig {
	return DatapathConfig{
		Cases: Cases, Sides: []string{SideNagare, SideEBPF, SideKernel}, Modes: []string{Mode1CPU, ModeSplit},
		Reps: 3, Warm: time.Second, Dur: 5 * time.Second, PingCount: 200, Iperf: true, Ping: true,
		FlowCases: []string{CaseBridge, CaseRouter, CaseSNAT}, FlowModes: []string{ModeSplit}, FlowRates: []float64{100e3, 200e3, 0},
		MemFlows: 100000, MemRate: 20000,
		Sim:   true,
		Quiet: Quiet{BusyPct: 10, MaxWait: 120 * time.Second, ForeignPct: 4, MaxTries: 12},
	}
}

// runner carries one run's state.
type runner struct {
	ctx      context.Context
	cfg      DatapathConfig
	lab      *lab
	tools    *tools // nil: no baseline, kernel side skipped
	cluster  *cluster
	logf     func(string, ...any)
	report   *Report
	nextFlow uint64
}

// nsDev names an interface in a namespace.
type nsDev struct{ ns, dev string }

// endpoint is a VM: its namespace, interface and addresses.
type endpoint struct{ NS, Dev, IP, MAC string }

// testbed is one side of one case, built and ready for traffic from src to
// dst.
type testbed struct {
	side, kase string
	src, dst   endpoint
	nextHop    string       // destination MAC of generated frames: dst's on L2, the router's on L3
	rps        []nsDev      // the first device of the datapath, where RPS moves it to CPU1
	agents     []*agentProc // nagare: the case's agents
	nss        []string     // namespaces to delete afterwards
}

// place applies a CPU placement mode.
func (tb *testbed) place(l *lab, mode string) error {
	mask, cpus := 0, []int{0, 1}
	switch mode {
	case Mode1CPU:
		cpus = []int{0}
	case ModeSplit:
		cpus = []int{1}
		if tb.side == SideKernel {
			mask = 2
		}
	case ModeSplitRPS:
		mask, cpus = 2, []int{1}
	}
	for _, d := range tb.rps {
		if err := l.setRPS(d.ns, d.dev, mask); err != nil {
			return err
		}
	}
	for _, a := range tb.agents {
		if err := pin(a.proc.pid(), cpus); err != nil {
			return err
		}
	}
	return nil
}

// agentCounters sums the agents' counters (nil for the kernel).
func (tb *testbed) agentCounters() (map[string]float64, error) {
	if len(tb.agents) == 0 {
		return nil, nil
	}
	sum := map[string]float64{}
	for _, a := range tb.agents {
		c, err := a.counters()
		if err != nil {
			return nil, err
		}
		for k, v := range c {
			sum[k] += v
		}
	}
	return sum, nil
}

// RunDatapath runs the datapath benchmark and returns its table. Whatever it
// created is removed when it returns, also on error and cancellation.
func RunDatapath(ctx context.Context, cfg DatapathConfig, logf func(string, ...any)) (*Report, error) {
	rep := &Report{}
	l, err := newLab(logf)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	r := &runner{ctx: ctx, cfg: cfg, lab: l, logf: logf, report: rep}
	const fallback = "; the Nagare side uses the Go generator (nagare-bench flowgen cycling 8 flows) and no sink program, so its numbers are not the baseline's method"
	if cfg.Baseline == "" {
		rep.note("KERNEL SIDE SKIPPED: the baseline harness (shared/baseline) was not found; pass --baseline" + fallback)
	} else if r.tools, err = buildTools(cfg.Baseline); err != nil {
		rep.note("KERNEL SIDE SKIPPED: " + err.Error() + fallback)
		r.tools = nil
	}
	if r.tools == nil {
		logf("%s", rep.Notes[len(rep.Notes)-1])
	}
	r.cluster, err = startCluster(ctx, cfg.AgentBin)
	if err != nil {
		return nil, err
	}
	defer r.cluster.Close()
	rep.Placement = placementNote(cfg)
	for _, c := range cfg.Cases {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		r.runCase(c)
	}
	if cfg.Sim {
		rep.Rows = append(rep.Rows, r.simBench())
	}
	rep.finish(cfg)
	return rep, ctx.Err()
}

// runCase builds both sides of a case, measures them and tears them down.
func (r *runner) runCase(c string) {
	var beds []*testbed
	defer func() {
		for _, tb := range beds {
			for _, a := range tb.agents {
				r.lab.stopProcs(a.proc)
				if tb.side == SideEBPF { // what the kernel datapath left pinned
					if err := os.RemoveAll(filepath.Join(ebpf.PinRoot, a.name)); err != nil {
						r.logf("remove %s's pins: %v", a.name, err)
					}
				}
			}
			r.lab.deleteNS(tb.nss...)
		}
	}()
	type builder struct {
		side  string
		build func() (*testbed, error)
	}
	var builders []builder
	if r.tools != nil && slices.Contains(r.cfg.Sides, SideKernel) {
		builders = append(builders, builder{SideKernel, func() (*testbed, error) { return kernelCase(r.lab, c) }})
	}
	for _, v := range []variant{userspaceVariant, ebpfVariant} {
		if slices.Contains(r.cfg.Sides, v.side) {
			builders = append(builders, builder{v.side, func() (*testbed, error) { return r.cluster.nagareCase(r.ctx, r.lab, c, v) }})
		}
	}
	var ok []*testbed
	for _, b := range builders {
		tb, err := b.build()
		if tb != nil {
			beds = append(beds, tb) // for cleanup, even half built
		}
		if err == nil {
			err = r.attachSink(tb.dst)
		}
		if err != nil {
			r.logf("%s %s: setup failed: %v", b.side, c, err)
			r.report.note(fmt.Sprintf("%s %s: setup failed: %s", b.side, c, firstLine(err.Error())))
			continue
		}
		ok = append(ok, tb)
	}
	if len(ok) == 0 {
		return
	}
	steps := []func(string, []*testbed){r.ppsRows}
	if slices.Contains(r.cfg.FlowCases, c) {
		if r.cfg.MemFlows > 0 {
			steps = append(steps, r.memRows)
		}
		steps = append(steps, r.flowRows)
	}
	if r.cfg.Iperf {
		steps = append(steps, r.iperfRow)
	}
	if r.cfg.Ping {
		steps = append(steps, r.pingRow)
	}
	for _, step := range steps {
		n := len(r.report.Rows)
		step(c, ok)
		if r.ctx.Err() != nil {
			r.report.Rows = r.report.Rows[:n] // interrupted: no half-measured rows
			return
		}
	}
}

func kernelCase(l *lab, c string) (*testbed, error) {
	switch c {
	case CaseBridge:
		return kernelBridge(l)
	case CaseRouter:
		return kernelRouter(l, false)
	case CaseSNAT:
		return kernelRouter(l, true)
	case CaseVXLAN:
		return kernelVXLAN(l)
	}
	return nil, fmt.Errorf("unknown case %q", c)
}

func (c *cluster) nagareCase(ctx context.Context, l *lab, name string, v variant) (*testbed, error) {
	switch name {
	case CaseBridge:
		return c.nagareBridge(ctx, l, v)
	case CaseRouter:
		return c.nagareRouter(ctx, l, false, v)
	case CaseSNAT:
		return c.nagareRouter(ctx, l, true, v)
	case CaseVXLAN:
		return c.nagareVXLAN(ctx, l, v)
	}
	return nil, fmt.Errorf("unknown case %q", name)
}

// ppsRows measures 64-byte pps in every mode, the sides interleaved
// repetition by repetition so that drift in the machine hits both alike.
func (r *runner) ppsRows(c string, beds []*testbed) {
	for _, mode := range r.cfg.Modes {
		vals := map[string][]float64{}
		errs := map[string]string{}
		for rep := 1; rep <= r.cfg.Reps && r.ctx.Err() == nil; rep++ {
			for _, tb := range beds {
				if errs[tb.side] != "" || r.ctx.Err() != nil {
					continue
				}
				s, err := r.measure(tb, mode, "pps", rep, genSpec{profile: r.profilePath(tb, mode, "pps", rep)})
				if err != nil {
					r.logf("%s %s %s: %v", tb.side, c, mode, err)
					errs[tb.side] = firstLine(err.Error())
					continue
				}
				vals[tb.side] = append(vals[tb.side], s.Value)
			}
		}
		r.report.Rows = append(r.report.Rows, newRow(c, "64B frames/s, "+mode, unitPPS, vals, errs))
	}
}

// flowRows measures flow setup: frames that each carry a new 5-tuple, at
// each offered rate. Nagare's value is flows installed per second; the
// kernel has no per-flow state on these paths, so its value is what it
// delivers of the same traffic.
func (r *runner) flowRows(c string, beds []*testbed) {
	for _, mode := range r.cfg.FlowModes {
		for _, rate := range r.cfg.FlowRates {
			vals := map[string][]float64{}
			errs := map[string]string{}
			what := fmt.Sprintf("new flows/s, %s offered, %s", rateName(rate), mode)
			for rep := 1; rep <= r.cfg.Reps && r.ctx.Err() == nil; rep++ {
				for _, tb := range beds {
					if errs[tb.side] != "" || r.ctx.Err() != nil {
						continue
					}
					g := genSpec{newFlows: true, rate: rate, profile: r.profilePath(tb, mode, "flows-"+rateName(rate), rep)}
					s, err := r.measure(tb, mode, "flows", rep, g)
					if err != nil {
						r.logf("%s %s flows: %v", tb.side, c, err)
						errs[tb.side] = firstLine(err.Error())
						continue
					}
					vals[tb.side] = append(vals[tb.side], s.Value)
				}
			}
			r.report.Rows = append(r.report.Rows, newRow(c, what, unitFlows, vals, errs))
		}
	}
}

func (r *runner) iperfRow(c string, beds []*testbed) {
	vals := map[string][]float64{}
	errs := map[string]string{}
	for rep := 1; rep <= r.cfg.Reps && r.ctx.Err() == nil; rep++ {
		for _, tb := range beds {
			if r.ctx.Err() != nil {
				break
			}
			res, err := r.iperf3(tb)
			if err != nil {
				r.logf("%s %s: %v", tb.side, c, err)
				errs[tb.side] = firstLine(err.Error())
				continue
			}
			vals[tb.side] = append(vals[tb.side], res.Gbps)
		}
	}
	for side := range errs {
		if len(vals[side]) > 0 {
			delete(errs, side) // some runs worked: report them
		}
	}
	r.report.Rows = append(r.report.Rows, newRow(c, "TCP 1 stream Gbit/s", unitGbps, vals, errs))
}

func (r *runner) pingRow(c string, beds []*testbed) {
	row := Row{Case: c, Metric: fmt.Sprintf("ping RTT avg/p50/p99 (n=%d)", r.cfg.PingCount), Unit: unitRTT}
	for _, tb := range beds {
		if r.ctx.Err() != nil {
			return
		}
		res, err := r.ping(tb)
		st := Stat{}
		if err != nil {
			r.logf("%s %s: %v", tb.side, c, err)
			st.Err = firstLine(err.Error())
		} else {
			st.Runs, st.Median = []float64{res.P50}, res.P50
			st.Min, st.Max = res.P50, res.P50
			st.Text = fmt.Sprintf("%s / %s / %s", fmtRTT(res.Avg), fmtRTT(res.P50), fmtRTT(res.P99))
		}
		row.set(tb.side, st)
	}
	row.ratio()
	r.report.Rows = append(r.report.Rows, row)
}

// profilePath is where the first window of each case, side and mode is
// profiled when Profile is set ("" otherwise).
func (r *runner) profilePath(tb *testbed, mode, what string, rep int) string {
	if r.cfg.Profile == "" || rep != 1 {
		return ""
	}
	return filepath.Join(r.cfg.Profile, fmt.Sprintf("%s-%s-%s-%s", tb.side, tb.kase, mode, what))
}

func rateName(rate float64) string {
	if rate == 0 {
		return "max"
	}
	return fmtCount(rate)
}

func placementNote(cfg DatapathConfig) string {
	return "CPU placement (2 vCPUs): the generator is pinned to CPU0 in every mode. " +
		"1cpu: kernel as baseline 1cpu (no RPS: the whole path in CPU0's softirq); Nagare agents pinned to CPU0 too, sharing it with the generator. " +
		"split (one generator core, one datapath core): kernel as baseline rps (RPS on the first datapath device: forwarding on CPU1, unpaced); Nagare agents pinned to CPU1, no RPS (the generator's veth hop and the AF_PACKET receive copy stay in CPU0's softirq). " +
		"split-rps: Nagare with RPS too, so its receive also runs on CPU1. " +
		"ping and iperf3: no pinning, no RPS."
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}
