// Command nagare-bench runs Nagare's benchmarks and prints one table.
//
//	nagare-bench api       control plane: port creates/s and latency, list of 10k ports
//	nagare-bench neutron   Neutron port creates through auth + translation + etcd, list of 10k ports
//	nagare-bench datapath  Nagare and the Linux kernel side by side: pps, TCP, RTT,
//	                       flow setup, simulation (root; see `nagare-bench datapath -h`)
//	nagare-bench flowgen   the new-flow traffic generator the datapath benchmark runs
//	nagare-bench lb        HTTP requests/s through a load balancer VIP, beside the kernel (root)
//	nagare-bench scale     N simulated hypervisors (real agents, in-memory datapath) and 10,000
//	                       ports: create → flow-ready latency, full sync, etcd load, CPU, RSS
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nagare/nagare/pkg/bench"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: nagare-bench api|neutron|datapath|flowgen|lb|scale [flags]")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch what, args := os.Args[1], os.Args[2:]; what {
	case "api":
		err = api(ctx, args)
	case "neutron":
		err = neutronBench(ctx, args)
	case "datapath":
		err = datapath(ctx, args)
	case "flowgen":
		err = flowgen(ctx, args)
	case "lb":
		err = lbBench(ctx, args)
	case "scale":
		err = scaleBench(ctx, args)
	default:
		fmt.Fprintf(os.Stderr, "nagare-bench: unknown benchmark %q (have: api, neutron, datapath, flowgen, lb, scale)\n", what)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "nagare-bench:", err)
		os.Exit(1)
	}
}

func logf(f string, a ...any) {
	fmt.Fprintf(os.Stderr, "[%s] "+f+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

func api(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nagare-bench api", flag.ExitOnError)
	clients := fs.String("clients", "1,8,64", "API concurrency levels")
	creates := fs.Int("creates", 2000, "port creates per concurrency level")
	listPorts := fs.Int("list-ports", 10000, "ports present when timing a full list")
	auth := fs.String("auth", "off,on", "authentication: off (--auth noauth), on (--auth password: every request's token validated), or both in turn")
	profile := fs.String("cpuprofile", "", "write a CPU profile of the last concurrency level to FILE.auth-on / FILE.auth-off")
	_ = fs.Parse(args)
	var levels []int
	for _, s := range strings.Split(*clients, ",") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return fmt.Errorf("--clients: %q is not a positive number", s)
		}
		levels = append(levels, n)
	}
	var res []bench.APIResult
	for _, a := range list(*auth) {
		if a != "on" && a != "off" {
			return fmt.Errorf("--auth: %q is not on or off", a)
		}
		cfg := bench.APIConfig{Clients: levels, Creates: *creates, ListPorts: *listPorts, Repeats: 5, Auth: a == "on"}
		if *profile != "" {
			cfg.CPUProfile = *profile + ".auth-" + a
		}
		r, err := bench.RunAPI(ctx, cfg, func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) })
		if err != nil {
			return err
		}
		res = append(res, r...)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tauth\tclients\tcreates/s\tp50\tp99\tCPU each")
	onOff := map[bool]string{false: "off", true: "on"}
	for _, r := range res {
		fmt.Fprintf(tw, "API port create (embedded etcd, fsync)\t%s\t%d\t%.0f\t%s\t%s\t%s\n", onOff[r.Auth], r.Clients, r.PerSecond, r.P50.Round(10e3),
			r.P99.Round(10e3), r.CPUPerCreate.Round(1e3))
	}
	for _, r := range res {
		if r.ListPorts > 0 {
			fmt.Fprintf(tw, "API list all ports\t%s\t1\t%d ports\t%s\t\n", onOff[r.Auth], r.ListPorts, r.ListLatency.Round(10e3))
		}
	}
	return tw.Flush()
}

func datapath(ctx context.Context, args []string) error {
	cfg := bench.DefaultDatapathConfig()
	fs := flag.NewFlagSet("nagare-bench datapath", flag.ExitOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: nagare-bench datapath [flags]

Builds each case twice in network namespaces (prefix nbench<pid>-, removed on
exit) — with nagare-server and nagare-agent processes, and with the Linux
kernel as shared/baseline does it — and measures both side by side with the
baseline's generator and sink. Needs root. Prints one table on stdout and the
log of every window on stderr.

`)
		fs.PrintDefaults()
	}
	cases := fs.String("cases", strings.Join(cfg.Cases, ","), "cases: bridge (baseline B), router (C), snat (D: router + masquerade), vxlan (E)")
	sides := fs.String("sides", strings.Join(cfg.Sides, ","), "what to measure: nagare (userspace datapath), nagare-ebpf (kernel datapath), kernel")
	modes := fs.String("modes", strings.Join(cfg.Modes, ","), "CPU placements of the pps windows: 1cpu, split, split-rps")
	fs.IntVar(&cfg.Reps, "reps", cfg.Reps, "repetitions of every measurement (median reported)")
	fs.DurationVar(&cfg.Warm, "warm", cfg.Warm, "warm-up before each window")
	fs.DurationVar(&cfg.Dur, "dur", cfg.Dur, "measurement window (and iperf3 duration)")
	fs.IntVar(&cfg.PingCount, "ping-count", cfg.PingCount, "echo requests per RTT measurement")
	fs.BoolVar(&cfg.Iperf, "iperf", cfg.Iperf, "measure single-stream TCP with iperf3")
	fs.BoolVar(&cfg.Ping, "ping", cfg.Ping, "measure ping RTT")
	flowCases := fs.String("flow-cases", strings.Join(cfg.FlowCases, ","), "cases that get flow-setup windows (empty: none)")
	flowModes := fs.String("flow-modes", strings.Join(cfg.FlowModes, ","), "CPU placements of the flow-setup windows")
	flowRates := fs.String("flow-rates", "100000,200000,max", "offered new-flow rates, frames/s (max: unpaced)")
	fs.IntVar(&cfg.MemFlows, "mem-flows", cfg.MemFlows, "in the flow cases, measure the agents' RSS holding this many flows (0: not)")
	fs.Float64Var(&cfg.MemRate, "mem-rate", cfg.MemRate, "new flows/s offered while filling the agents for --mem-flows")
	fs.BoolVar(&cfg.Sim, "sim", cfg.Sim, "run the simulation's Go benchmark (needs go and the source tree)")
	fs.StringVar(&cfg.SrcDir, "src", "", "Nagare's source tree (default: found from the working directory)")
	fs.StringVar(&cfg.Baseline, "baseline", "", "the kernel baseline harness (default: <src>/../shared/baseline)")
	fs.StringVar(&cfg.AgentBin, "agent", "", "nagare-agent binary (default: next to nagare-bench)")
	fs.Float64Var(&cfg.Quiet.BusyPct, "quiet-pct", cfg.Quiet.BusyPct, "wait before each window until the machine is at most this % busy")
	fs.DurationVar(&cfg.Quiet.MaxWait, "quiet-max", cfg.Quiet.MaxWait, "longest wait for quiet")
	fs.Float64Var(&cfg.Quiet.ForeignPct, "noise-pct", cfg.Quiet.ForeignPct, "a window where other processes used more than this % of the CPUs is repeated")
	fs.IntVar(&cfg.Quiet.MaxTries, "max-tries", cfg.Quiet.MaxTries, "windows per repetition before a noisy one is kept")
	fs.StringVar(&cfg.Profile, "profile", "", "directory: perf-record the first split-mode pps window of each case and write a summary, and save the agents' heap profiles at --mem-flows")
	jsonOut := fs.String("json", "", "also write the table and every window to this file")
	_ = fs.Parse(args)
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}

	cfg.Cases, cfg.Modes, cfg.FlowCases, cfg.FlowModes = list(*cases), list(*modes), list(*flowCases), list(*flowModes)
	cfg.Sides = list(*sides)
	for _, s := range cfg.Sides {
		if s != bench.SideNagare && s != bench.SideEBPF && s != bench.SideKernel {
			return fmt.Errorf("unknown side %q (have: nagare, nagare-ebpf, kernel)", s)
		}
	}
	for _, c := range append(append([]string{}, cfg.Cases...), cfg.FlowCases...) {
		if !slices.Contains(bench.Cases, c) {
			return fmt.Errorf("unknown case %q (have: %s)", c, strings.Join(bench.Cases, ", "))
		}
	}
	for _, m := range append(append([]string{}, cfg.Modes...), cfg.FlowModes...) {
		if m != bench.Mode1CPU && m != bench.ModeSplit && m != bench.ModeSplitRPS {
			return fmt.Errorf("unknown mode %q (have: 1cpu, split, split-rps)", m)
		}
	}
	cfg.FlowRates = nil
	for _, s := range list(*flowRates) {
		if s == "max" {
			cfg.FlowRates = append(cfg.FlowRates, 0)
			continue
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("--flow-rates: %q is not a rate", s)
		}
		cfg.FlowRates = append(cfg.FlowRates, v)
	}
	if cfg.MemFlows < 0 || cfg.MemFlows > 0 && cfg.MemRate <= 0 {
		return fmt.Errorf("--mem-flows %d at --mem-rate %g: need a count ≥ 0 and a rate > 0", cfg.MemFlows, cfg.MemRate)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg.SelfBin = self
	if cfg.AgentBin == "" {
		cfg.AgentBin = filepath.Join(filepath.Dir(self), "nagare-agent")
	}
	if cfg.SrcDir == "" {
		cfg.SrcDir = findModule()
	}
	if cfg.Baseline == "" && cfg.SrcDir != "" {
		cfg.Baseline = filepath.Join(cfg.SrcDir, "..", "shared", "baseline")
	}
	if cfg.Baseline != "" {
		if _, err := os.Stat(cfg.Baseline); err != nil {
			logf("no kernel baseline harness at %s: the kernel side is skipped (pass --baseline)", cfg.Baseline)
			cfg.Baseline = ""
		}
	}
	rep, err := bench.RunDatapath(ctx, cfg, logf)
	if rep != nil {
		rep.Print(os.Stdout)
		if *jsonOut != "" {
			b, jerr := json.MarshalIndent(rep, "", "  ")
			if jerr == nil {
				jerr = os.WriteFile(*jsonOut, b, 0o644)
			}
			err = errors.Join(err, jerr)
		}
	}
	return err
}

// findModule walks up from the working directory to Nagare's go.mod.
func findModule() string {
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/nagare/nagare\n") {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func list(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

func flowgen(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nagare-bench flowgen", flag.ExitOnError)
	var cfg bench.FlowGenConfig
	dmac := fs.String("dst-mac", "", "destination MAC")
	smac := fs.String("src-mac", "", "source MAC")
	src := fs.String("src", "", "source IPv4 address (its last octet varies)")
	dst := fs.String("dst", "", "destination IPv4 address")
	secs := fs.Float64("seconds", 5, "how long to send")
	fs.StringVar(&cfg.Interface, "if", "", "interface to send on (in the current network namespace)")
	fs.Float64Var(&cfg.Rate, "rate", 0, "frames per second (0: as fast as possible)")
	fs.Uint64Var(&cfg.Start, "start", 0, "index of the first flow")
	fs.Uint64Var(&cfg.Cycle, "cycle", 0, "cycle over this many flows (0: every frame a new flow)")
	fs.IntVar(&cfg.Batch, "batch", 32, "frames per sendmmsg")
	_ = fs.Parse(args)
	var err error
	if cfg.DstMAC, err = net.ParseMAC(*dmac); err != nil {
		return fmt.Errorf("--dst-mac: %w", err)
	}
	if cfg.SrcMAC, err = net.ParseMAC(*smac); err != nil {
		return fmt.Errorf("--src-mac: %w", err)
	}
	if cfg.SrcIP, err = netip.ParseAddr(*src); err != nil {
		return fmt.Errorf("--src: %w", err)
	}
	if cfg.DstIP, err = netip.ParseAddr(*dst); err != nil {
		return fmt.Errorf("--dst: %w", err)
	}
	cfg.Duration = time.Duration(*secs * float64(time.Second))
	res, err := bench.RunFlowGen(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Printf("flowgen: sent=%d in %.3fs = %.0f pps, eagain/enobufs=%d\n", res.Sent, res.Elapsed.Seconds(),
		float64(res.Sent)/res.Elapsed.Seconds(), res.Retries)
	return nil
}
