package bench

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
)

// Report is the datapath benchmark's result: one table, notes, and every
// window measured (for --json).
type Report struct {
	Rows      []Row
	Notes     []string
	Placement string
	Samples   []sample

	noisyRetried, noisyKept int
}

// Row is one line of the table: a metric of a case on every side.
type Row struct {
	Case, Metric string
	Unit         string
	// Nagare is Nagare with the userspace datapath, EBPF with the kernel
	// (eBPF) datapath.
	Nagare, EBPF, Kernel Stat
	// Ratio is Nagare's median over the kernel's, RatioEBPF the eBPF
	// datapath's; 0 when one is missing. Above 1 is better for Nagare in
	// every unit but RTT.
	Ratio, RatioEBPF float64
	Note             string
}

// Stat is one side's result in a row.
type Stat struct {
	Runs             []float64
	Median, Min, Max float64
	Text             string // preformatted (ping's avg/p50/p99)
	Err              string // why there is no value
}

// Units.
const (
	unitPPS   = "pps"
	unitFlows = "flows/s"
	unitGbps  = "Gbit/s"
	unitRTT   = "ms"
	unitWalks = "walks/s"
)

func newStat(runs []float64) Stat {
	if len(runs) == 0 {
		return Stat{}
	}
	s := Stat{Runs: runs}
	sorted := append([]float64(nil), runs...)
	sort.Float64s(sorted)
	n := len(sorted)
	s.Min, s.Max = sorted[0], sorted[n-1]
	if n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	return s
}

func newRow(c, metric, unit string, vals map[string][]float64, errs map[string]string) Row {
	row := Row{Case: c, Metric: metric, Unit: unit}
	for _, side := range []string{SideNagare, SideEBPF, SideKernel} {
		st := newStat(vals[side])
		st.Err = errs[side]
		row.set(side, st)
	}
	row.ratio()
	return row
}

func (r *Row) set(side string, st Stat) {
	switch side {
	case SideNagare:
		r.Nagare = st
	case SideEBPF:
		r.EBPF = st
	default:
		r.Kernel = st
	}
}

func (r *Row) ratio() {
	if r.Nagare.Median > 0 && r.Kernel.Median > 0 {
		r.Ratio = r.Nagare.Median / r.Kernel.Median
	}
	if r.EBPF.Median > 0 && r.Kernel.Median > 0 {
		r.RatioEBPF = r.EBPF.Median / r.Kernel.Median
	}
}

func (r *Report) note(s string) { r.Notes = append(r.Notes, s) }

// finish adds the notes every table needs.
func (r *Report) finish(cfg DatapathConfig) {
	r.note(fmt.Sprintf("medians of %d windows of %s after %s warm-up; [min–max] of the runs; windows where other processes used > %.0f%% of the CPUs were repeated (%d repeated, %d kept after %d tries)",
		cfg.Reps, cfg.Dur, cfg.Warm, cfg.Quiet.ForeignPct, r.noisyRetried, r.noisyKept, cfg.Quiet.MaxTries))
	r.note("flows/s: Nagare = flows installed per second by the agent(s) (upcall → simulate → install), every frame a new 5-tuple; kernel = frames of that traffic delivered per second (no per-flow state on these paths)")
	r.note("split, kernel side: unpaced RPS, as the baseline's rps column; with VXLAN it collapses into receive livelock (baseline footnote 3: 0.23 M unpaced against a 0.59 M NDR), so a split VXLAN ratio above 1 says more about livelock than about Nagare")
	r.note("TCP and ping: the VMs of both sides keep their interfaces' default offloads (tx checksum, TSO/GSO), as in the baseline")
	r.note("router: Nagare's topology is VM─bridge─router─bridge─VM (a tenant network); the kernel's is VM─router─VM (baseline C). Hits cost the same whatever the depth")
}

// Print writes the table and its notes.
func (r *Report) Print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "case\tmetric\tNagare userspace\tNagare eBPF\tkernel\tuserspace/kernel\teBPF/kernel\tspread U / E / K")
	for _, row := range r.Rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", caseTitle(row.Case), row.Metric,
			row.cell(row.Nagare), row.cell(row.EBPF), row.cell(row.Kernel), row.ratioText(row.Ratio), row.ratioText(row.RatioEBPF), row.spread())
	}
	tw.Flush()
	if r.Placement != "" {
		fmt.Fprintf(w, "\n%s\n", wrap(r.Placement, 100))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "* %s\n", wrap(n, 100))
	}
}

func caseTitle(c string) string {
	switch c {
	case CaseBridge:
		return "B  VM→VM, one bridge"
	case CaseRouter:
		return "C  VM→router→VM"
	case CaseSNAT:
		return "D  VM→router+SNAT→VM"
	case CaseVXLAN:
		return "E  VM→VM, VXLAN, 2 hosts"
	}
	return c
}

func (r *Row) cell(s Stat) string {
	switch {
	case s.Err != "":
		return "failed (see log)"
	case len(s.Runs) == 0:
		return "—"
	case s.Text != "":
		return s.Text
	}
	return r.format(s.Median)
}

func (r *Row) format(v float64) string {
	switch r.Unit {
	case unitPPS, unitFlows, unitWalks:
		return fmtCount(v)
	case unitGbps:
		return fmt.Sprintf("%.2f", v)
	case unitRTT:
		return fmtRTT(v)
	}
	return fmt.Sprintf("%g", v)
}

func (r *Row) ratioText(ratio float64) string {
	if ratio == 0 {
		return "—"
	}
	if r.Unit == unitRTT {
		return fmt.Sprintf("%.2f (p50; lower is better)", ratio)
	}
	return fmt.Sprintf("%.2f", ratio)
}

// spread is (max-min)/median of each side's runs.
func (r *Row) spread() string {
	one := func(s Stat) string {
		if len(s.Runs) < 2 || s.Median == 0 {
			return "—"
		}
		return fmt.Sprintf("%.0f%%", 100*(s.Max-s.Min)/s.Median)
	}
	if r.Note != "" {
		return r.Note
	}
	return one(r.Nagare) + " / " + one(r.EBPF) + " / " + one(r.Kernel)
}

// fmtCount prints 1234567 as 1.23M and 12345 as 12.3k.
func fmtCount(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

// fmtRTT prints milliseconds as µs below 1 ms.
func fmtRTT(ms float64) string {
	if ms < 1 {
		return fmt.Sprintf("%.0fµs", ms*1000)
	}
	return fmt.Sprintf("%.2fms", ms)
}

func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		if i > 0 {
			if n+1+len(w) > width {
				b.WriteString("\n  ")
				n = 2
			} else {
				b.WriteByte(' ')
				n++
			}
		}
		b.WriteString(w)
		n += len(w)
	}
	return b.String()
}
