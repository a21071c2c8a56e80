package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Traffic generation and measurement, by the baseline's method
// (shared/baseline/README.md, lib.sh): udpgen's 60-byte frames on CPU0, a tc
// BPF sink on the last veth, pps = delta of the sink's rx_packets over a
// fixed window after a warm-up, wait for a quiet machine before each
// window, repeat noisy windows.

// tools are the baseline's generator and sink, compiled from its sources
// at run time: shared/baseline is the reference, not copied into the repo.
type tools struct {
	udpgen string // executable
	sink   string // BPF object, section "tc"
}

// buildTools compiles gen/udpgen.c and bpf/sink.c of the baseline
// directory into a cache directory, when the sources are newer.
func buildTools(baseline string) (*tools, error) {
	if _, err := os.Stat(filepath.Join(baseline, "gen", "udpgen.c")); err != nil {
		return nil, fmt.Errorf("baseline harness not found at %s: %w", baseline, err)
	}
	cache := filepath.Join(os.TempDir(), "nagare-bench-baseline")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	t := &tools{udpgen: filepath.Join(cache, "udpgen"), sink: filepath.Join(cache, "sink.o")}
	arch, err := output("uname", "-m")
	if err != nil {
		return nil, err
	}
	builds := []struct {
		src, out string
		cmd      []string
	}{
		{filepath.Join(baseline, "gen", "udpgen.c"), t.udpgen, []string{"gcc", "-O2", "-Wall", "-o", t.udpgen, filepath.Join(baseline, "gen", "udpgen.c")}},
		{filepath.Join(baseline, "bpf", "sink.c"), t.sink, []string{"clang", "-O2", "-g", "-target", "bpf",
			"-I/usr/include/" + strings.TrimSpace(arch) + "-linux-gnu", "-c", filepath.Join(baseline, "bpf", "sink.c"), "-o", t.sink}},
	}
	for _, b := range builds {
		if newer(b.out, b.src) {
			continue
		}
		if _, err := exec.LookPath(b.cmd[0]); err != nil {
			return nil, fmt.Errorf("%s is needed to build %s: run scripts/setup.sh (clang llvm libbpf-dev gcc libc6-dev linux-libc-dev)", b.cmd[0], b.src)
		}
		if err := run(b.cmd[0], b.cmd[1:]...); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func newer(out, src string) bool {
	o, err := os.Stat(out)
	if err != nil {
		return false
	}
	s, err := os.Stat(src)
	return err == nil && o.ModTime().After(s.ModTime())
}

// attachSink puts the baseline's drop-UDP-port-9 program on dev's tc
// ingress: the generated frames end there, ping and TCP pass.
// Without the baseline there is no sink program: the frames go up the
// VM's stack to a closed port, still counted at the interface.
func (r *runner) attachSink(e endpoint) error {
	if r.tools == nil {
		return nil
	}
	if _, err := r.lab.exec(e.NS, "tc", "qdisc", "add", "dev", e.Dev, "clsact"); err != nil {
		return err
	}
	_, err := r.lab.exec(e.NS, "tc", "filter", "add", "dev", e.Dev, "ingress", "bpf", "da", "obj", r.tools.sink, "sec", "tc")
	return err
}

// genSpec says which generator a window runs.
type genSpec struct {
	newFlows bool    // the new-5-tuple generator (flowgen) instead of udpgen's 8 flows
	rate     float64 // frames/s; 0 unpaced
	start    uint64  // flowgen: first flow index (set by measure)
	cycle    uint64  // flowgen: cycle over this many new flows (0: never repeat)
	profile  string  // if set, perf-record the window into profile+".data"
}

// startGen starts the generator in tb's source VM, pinned to CPU0.
func (r *runner) startGen(tb *testbed, g genSpec, d time.Duration) (*proc, error) {
	secs := strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
	if g.newFlows || r.tools == nil {
		cycle := strconv.FormatUint(g.cycle, 10)
		if !g.newFlows {
			cycle = "8" // udpgen's 8 flows
		}
		return r.lab.start("flowgen", tb.src.NS, "0", []string{"GOMAXPROCS=1"}, r.cfg.SelfBin, "flowgen",
			"--if", tb.src.Dev, "--dst-mac", tb.nextHop, "--src-mac", tb.src.MAC, "--src", tb.src.IP, "--dst", tb.dst.IP,
			"--seconds", secs, "--rate", strconv.FormatFloat(g.rate, 'f', 0, 64), "--start", strconv.FormatUint(g.start, 10),
			"--cycle", cycle)
	}
	return r.lab.start("udpgen", tb.src.NS, "0", nil, r.tools.udpgen, tb.src.Dev, tb.nextHop, tb.src.MAC, tb.src.IP, tb.dst.IP,
		secs, "8", "64", "18", strconv.FormatFloat(g.rate, 'f', 0, 64))
}

// sample is one measurement window.
type sample struct {
	Side, Case, Mode, What string
	Rep                    int
	Value                  float64 // pps at the sink, or flows installed per second
	Sink, Offered          float64 // pps at the sink and out of the generator
	Busy                   float64 // machine busy % before the window
	Foreign                float64 // CPU % of processes not ours during the window
	Noisy                  bool
	CPU                    string
	Agent                  string // agent counters over the window (Nagare)
	Sent                   uint64 // frames the generator sent, warm-up included
}

var (
	genSent    = regexp.MustCompile(`sent=(\d+)`)
	genTrouble = regexp.MustCompile(`(?i)error|fail|cannot|usage`)
)

// window runs the generator, waits WARM, and measures over DUR.
func (r *runner) window(tb *testbed, mode string, g genSpec) (sample, error) {
	s := sample{Side: tb.side, Case: tb.kase, Mode: mode}
	if err := tb.place(r.lab, mode); err != nil {
		return s, err
	}
	s.Busy = r.waitQuiet()
	gen, err := r.startGen(tb, g, r.cfg.Warm+r.cfg.Dur+time.Second)
	if err != nil {
		return s, err
	}
	defer r.lab.forget(gen)
	if err := sleep(r.ctx, r.cfg.Warm); err != nil {
		gen.stop()
		return s, err
	}
	before, err := r.snap(tb)
	if err != nil {
		gen.stop()
		return s, err
	}
	var perf *proc
	if g.profile != "" {
		perf = r.startPerf(g.profile)
	}
	if err := sleep(r.ctx, r.cfg.Dur); err != nil {
		gen.stop()
		return s, err
	}
	after, err := r.snap(tb)
	if perf != nil {
		defer r.perfReport(perf, g.profile)
	}
	if err != nil {
		gen.stop()
		return s, err
	}
	if err := gen.wait(r.cfg.Warm + r.cfg.Dur + 30*time.Second); err != nil {
		return s, fmt.Errorf("generator: %w: %s", err, gen.out.String())
	}
	out := gen.out.String()
	if genTrouble.MatchString(out) {
		r.logf("generator said: %s", strings.TrimSpace(out))
	}
	if m := genSent.FindStringSubmatch(out); m != nil {
		s.Sent, _ = strconv.ParseUint(m[1], 10, 64)
	}
	dt := after.t.Sub(before.t).Seconds()
	s.Sink = float64(after.sinkRx-before.sinkRx) / dt
	s.Offered = float64(after.genTx-before.genTx) / dt
	s.Value = s.Sink
	use := before.cpu.to(after.cpu)
	s.Foreign, s.CPU = use.Foreign, use.String()
	s.Noisy = s.Foreign > r.cfg.Quiet.ForeignPct
	if tb.side != SideKernel {
		d := func(k string) float64 { return (after.agent[k] - before.agent[k]) / dt }
		s.Agent = fmt.Sprintf("misses/s=%.0f lost/s=%.0f", d("nagare_datapath_misses_total"), d("nagare_datapath_lost_total"))
		if g.newFlows {
			if _, ok := after.agent[metricFlowsInstalled]; ok {
				s.Value = d(metricFlowsInstalled)
			} else {
				// An agent without the counter: every upcall of a
				// new 5-tuple installs one flow.
				s.Value = d("nagare_agent_upcalls_total")
				s.Agent += " (flows counted as upcalls)"
			}
			s.Agent = fmt.Sprintf("installed/s=%.0f ", s.Value) + s.Agent
		}
	}
	return s, nil
}

const metricFlowsInstalled = "nagare_datapath_flows_installed_total"

// snapshot is the state of the counters at one edge of a window.
type snapshot struct {
	t             time.Time
	sinkRx, genTx uint64
	cpu           cpuSnap
	agent         map[string]float64 // summed over the testbed's agents
}

func (r *runner) snap(tb *testbed) (snapshot, error) {
	var s snapshot
	var err error
	s.cpu, err = snapCPU(append(r.lab.pids(), os.Getpid()))
	if err != nil {
		return s, err
	}
	if s.agent, err = tb.agentCounters(); err != nil {
		return s, err
	}
	if _, s.genTx, err = r.lab.devStats(tb.src.NS, tb.src.Dev); err != nil {
		return s, err
	}
	s.t = time.Now()
	s.sinkRx, _, err = r.lab.devStats(tb.dst.NS, tb.dst.Dev)
	return s, err
}

// measure repeats a window until it is not noisy (at most Quiet.MaxTries
// times; the last try is kept, marked noisy).
func (r *runner) measure(tb *testbed, mode, what string, rep int, g genSpec) (sample, error) {
	for try := 1; ; try++ {
		if g.newFlows {
			// Every window starts after the flows the last one sent, so
			// that none of its flows is still installed.
			g.start = r.nextFlow
		}
		s, err := r.window(tb, mode, g)
		r.nextFlow += s.Sent + 1000
		if err != nil {
			return s, err
		}
		s.What, s.Rep = what, rep
		flag := "ok"
		if s.Noisy {
			flag = "noisy"
		}
		r.logf("%-6s %-6s %-5s %-9s rep=%d value=%.0f sink_pps=%.0f offered_pps=%.0f pre_busy=%.0f%% foreign_cpu=%.1f%% %s %s %s",
			s.Side, s.Case, s.Mode, what, rep, s.Value, s.Sink, s.Offered, s.Busy, s.Foreign, flag, s.CPU, s.Agent)
		r.report.Samples = append(r.report.Samples, s)
		if !s.Noisy || try >= r.cfg.Quiet.MaxTries {
			if s.Noisy {
				r.report.noisyKept++
			}
			return s, nil
		}
		r.report.noisyRetried++
	}
}

// cpuSnap is /proc/stat's per-CPU jiffies and the CPU time of every other
// process.
type cpuSnap struct {
	cpus    [][8]uint64    // user nice system idle iowait irq softirq steal
	ownUser uint64         // utime of our processes
	others  map[int]uint64 // pid → utime+stime of processes not ours and not kernel threads
}

// snapCPU reads /proc/stat and the times of every process but ours (pids)
// and kernel threads.
func snapCPU(ours []int) (cpuSnap, error) {
	var s cpuSnap
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
			continue
		}
		var v [8]uint64
		for i := range v {
			v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
		}
		s.cpus = append(s.cpus, v)
	}
	if ours == nil {
		return s, nil
	}
	own := map[int]bool{}
	for _, p := range ours {
		own[p] = true
	}
	s.others = map[int]uint64{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return s, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone
		}
		// After the parenthesised command: state is field 3, flags 9,
		// utime 14, stime 15. Children's times (16, 17) are left out: they
		// arrive all at once when a child is reaped, whenever it ran.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if i < 0 || len(f) < 13 {
			continue
		}
		flags, _ := strconv.ParseUint(f[6], 10, 64)
		utime, _ := strconv.ParseUint(f[11], 10, 64)
		stime, _ := strconv.ParseUint(f[12], 10, 64)
		switch {
		case own[pid]:
			s.ownUser += utime
		case flags&pfKthread == 0:
			s.others[pid] = utime + stime
		}
	}
	return s, nil
}

const pfKthread = 0x00200000

// cpuUse is what the CPUs did between two snapshots, in percent.
type cpuUse struct {
	Busy, User, Sys, SoftIRQ []float64
	// Foreign is how much of all CPUs, in percent, went to processes that
	// are not ours: the larger of the user time not ours (the baseline's
	// rule, less our agents' user time; it sees short-lived compilers) and
	// the user and system time of the other processes alive at both ends
	// of the window or started in it (it sees another datapath's system
	// time, which the baseline's rule misses). Kernel threads are left
	// out: they also carry our softirq work.
	Foreign float64
}

func (a cpuSnap) to(b cpuSnap) cpuUse {
	var u cpuUse
	var allTotal, allUser float64
	for i := range min(len(a.cpus), len(b.cpus)) {
		var d [8]float64
		tot := 0.0
		for j := range d {
			d[j] = float64(b.cpus[i][j] - a.cpus[i][j])
			tot += d[j]
		}
		tot = math.Max(tot, 1)
		u.Busy = append(u.Busy, 100*(tot-d[3]-d[4])/tot)
		u.User = append(u.User, 100*(d[0]+d[1])/tot)
		u.Sys = append(u.Sys, 100*d[2]/tot)
		u.SoftIRQ = append(u.SoftIRQ, 100*d[6]/tot)
		allTotal += tot
		allUser += d[0] + d[1]
	}
	userForeign := allUser - (float64(b.ownUser) - float64(a.ownUser))
	var foreign uint64
	for pid, t := range b.others {
		if t0, ok := a.others[pid]; ok && t >= t0 {
			foreign += t - t0
		} else if !ok {
			foreign += t // started during the window
		}
	}
	u.Foreign = 100 * math.Max(userForeign, float64(foreign)) / math.Max(allTotal, 1)
	return u
}

func (u cpuUse) String() string {
	var b strings.Builder
	for i := range u.Busy {
		fmt.Fprintf(&b, "cpu%d:busy=%.0f%%(usr=%.0f,sys=%.0f,si=%.0f) ", i, u.Busy[i], u.User[i], u.Sys[i], u.SoftIRQ[i])
	}
	return strings.TrimSpace(b.String())
}

// sysBusy is how busy the whole machine was over the next second, percent.
func sysBusy(ctx context.Context) float64 {
	a, _ := snapCPU(nil)
	_ = sleep(ctx, time.Second)
	b, _ := snapCPU(nil)
	u := a.to(b)
	sum := 0.0
	for _, x := range u.Busy {
		sum += x
	}
	return sum / math.Max(float64(len(u.Busy)), 1)
}

// waitQuiet waits until the machine is at most Quiet.BusyPct busy, at most
// Quiet.MaxWait, and returns the last busy figure (lib.sh's wait_quiet).
func (r *runner) waitQuiet() float64 {
	start := time.Now()
	for {
		b := sysBusy(r.ctx)
		if b <= r.cfg.Quiet.BusyPct || time.Since(start) >= r.cfg.Quiet.MaxWait || r.ctx.Err() != nil {
			return b
		}
		if time.Since(start) < 1500*time.Millisecond {
			r.logf("machine busy (%.0f%%) - waiting for quiet (at most %s)", b, r.cfg.Quiet.MaxWait)
		}
	}
}

// rtt is a ping run's round-trip times in milliseconds.
type rtt struct {
	N                   int
	Avg, P50, P99, Max  float64
	Loss                string
	Busy                float64
	Side, Case, Command string
}

var pingTime = regexp.MustCompile(`time=([0-9.]+) ms`)
var pingLoss = regexp.MustCompile(`([0-9.]+)% packet loss`)

// ping sends PingCount echo requests 10 ms apart from the source VM to the
// sink VM on the otherwise idle path.
func (r *runner) ping(tb *testbed) (rtt, error) {
	res := rtt{Side: tb.side, Case: tb.kase}
	if err := tb.place(r.lab, ModeFree); err != nil {
		return res, err
	}
	res.Busy = r.waitQuiet()
	out, err := r.lab.exec(tb.src.NS, "ping", "-c", strconv.Itoa(r.cfg.PingCount), "-i", "0.01", tb.dst.IP)
	var ts []float64
	for _, m := range pingTime.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[1], 64)
		ts = append(ts, v)
	}
	if len(ts) == 0 {
		return res, fmt.Errorf("ping %s from %s: no replies: %v", tb.dst.IP, tb.src.NS, err)
	}
	if m := pingLoss.FindStringSubmatch(out); m != nil {
		res.Loss = m[1] + "%"
	}
	sum := 0.0
	for _, v := range ts {
		sum += v
	}
	sort.Float64s(ts)
	n := len(ts)
	// The baseline's percentiles: p50 = a[round(n/2)], p99 = a[ceil(0.99n)].
	res.N, res.Avg, res.Max = n, sum/float64(n), ts[n-1]
	res.P50 = ts[max(int(float64(n)*0.5+0.5), 1)-1]
	res.P99 = ts[min(int(math.Ceil(float64(n)*0.99)), n)-1]
	r.logf("%-6s %-6s ping(ms) n=%d avg=%.3f p50=%.3f p99=%.3f max=%.3f loss=%s pre_busy=%.0f%%",
		tb.side, tb.kase, res.N, res.Avg, res.P50, res.P99, res.Max, res.Loss, res.Busy)
	return res, nil
}

// iperf is one iperf3 run's result.
type iperf struct {
	Gbps             float64
	Retransmits      int
	SenderCPU, RxCPU float64
}

// iperf3 runs one single-stream TCP test of Dur seconds from the source VM
// to the sink VM (lib.sh's measure_iperf).
func (r *runner) iperf3(tb *testbed) (iperf, error) {
	var res iperf
	if err := tb.place(r.lab, ModeFree); err != nil {
		return res, err
	}
	r.waitQuiet()
	srv, err := r.lab.start("iperf3 server", tb.dst.NS, "", nil, "iperf3", "-s", "-1", "-p", "5201")
	if err != nil {
		return res, err
	}
	defer func() {
		srv.stop()
		r.lab.forget(srv)
	}()
	if err := sleep(r.ctx, 500*time.Millisecond); err != nil {
		return res, err
	}
	secs := strconv.Itoa(int(math.Max(1, r.cfg.Dur.Seconds())))
	out, err := r.lab.exec(tb.src.NS, "timeout", strconv.Itoa(int(r.cfg.Dur.Seconds())+15), "iperf3", "-c", tb.dst.IP,
		"-p", "5201", "-t", secs, "--connect-timeout", "3000", "-J")
	var j struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
			SumSent struct {
				Retransmits int `json:"retransmits"`
			} `json:"sum_sent"`
			CPU struct {
				Host   float64 `json:"host_total"`
				Remote float64 `json:"remote_total"`
			} `json:"cpu_utilization_percent"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if jerr := json.Unmarshal([]byte(out), &j); jerr != nil || j.End.SumReceived.BitsPerSecond == 0 {
		return res, fmt.Errorf("iperf3 %s→%s failed: %s %v", tb.src.NS, tb.dst.IP, j.Error, errors.Join(err, jerr))
	}
	res = iperf{Gbps: j.End.SumReceived.BitsPerSecond / 1e9, Retransmits: j.End.SumSent.Retransmits,
		SenderCPU: j.End.CPU.Host, RxCPU: j.End.CPU.Remote}
	r.logf("%-6s %-6s iperf3 %.2f Gbit/s sender_cpu=%.0f%% receiver_cpu=%.0f%% retrans=%d",
		tb.side, tb.kase, res.Gbps, res.SenderCPU, res.RxCPU, res.Retransmits)
	return res, nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// startPerf samples every CPU, with call graphs, for one window.
func (r *runner) startPerf(base string) *proc {
	if err := os.MkdirAll(filepath.Dir(base), 0o755); err != nil {
		r.logf("profile: %v", err)
		return nil
	}
	p, err := r.lab.start("perf", "", "", nil, "perf", "record", "-a", "-g", "-F", "999", "-o", base+".data",
		"--", "sleep", strconv.FormatFloat(r.cfg.Dur.Seconds(), 'f', 1, 64))
	if err != nil {
		r.logf("profile: %v (is perf installed?)", err)
		return nil
	}
	return p
}

// perfReport waits for perf and writes two summaries next to the data:
// .txt (time by process and by kernel or user space, then the hottest
// symbols) for the report, .callers.txt (call graphs) for digging.
func (r *runner) perfReport(p *proc, base string) {
	if err := p.wait(time.Minute); err != nil {
		r.logf("profile: perf record: %v: %s", err, p.out.String())
	}
	r.lab.forget(p)
	var b strings.Builder
	for _, sort := range []string{"comm,dso", "comm,sym"} {
		out, err := output("perf", "report", "-i", base+".data", "--stdio", "--no-children", "-g", "none",
			"--sort", sort, "--percent-limit", "0.7")
		if err != nil {
			r.logf("profile: %v", err)
			return
		}
		b.WriteString(out)
	}
	if err := os.WriteFile(base+".txt", []byte(b.String()), 0o644); err != nil {
		r.logf("profile: %v", err)
		return
	}
	if out, err := output("perf", "report", "-i", base+".data", "--stdio", "--no-children", "--sort", "comm,sym",
		"--percent-limit", "2"); err == nil {
		_ = os.WriteFile(base+".callers.txt", []byte(out), 0o644)
	}
	r.logf("profile written to %s.txt", base)
}
