package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// unitMB is the unit of the memory rows.
const unitMB = "MB"

// metricFlows is the agent's gauge of flows installed now.
const metricFlows = "nagare_datapath_flows"

// memRows measures an agent's memory holding MemFlows flows (issue 2.6's
// "agent RSS < 150 MB at 100,000 flows"): the generator cycles over
// MemFlows new 5-tuples, paced so that the agent installs every one,
// until the agent holds them all (or the time it should take has passed
// three times), and the agents' resident set is read then. It runs before
// the flow-setup windows, on agents that have seen only the pps windows'
// few flows: the Go runtime keeps what a window at full rate made it
// grow to, so an RSS read after those would measure them. The kernel has
// no per-flow state on these paths, so it has no value. On the eBPF
// datapath the flows themselves live in kernel maps, which the agent's
// RSS does not include (176 bytes per flow, the README says).
func (r *runner) memRows(c string, beds []*testbed) {
	n := r.cfg.MemFlows
	vals := map[string][]float64{}
	errs := map[string]string{}
	texts := map[string]string{}
	for _, tb := range beds {
		if len(tb.agents) == 0 || r.ctx.Err() != nil {
			continue
		}
		text, rss, err := r.memWindow(tb, n)
		if err != nil {
			r.logf("%s %s memory at %d flows: %v", tb.side, c, n, err)
			errs[tb.side] = firstLine(err.Error())
			continue
		}
		vals[tb.side], texts[tb.side] = []float64{rss}, text
	}
	row := newRow(c, fmt.Sprintf("agent RSS at %s flows", fmtCount(float64(n))), unitMB, vals, errs)
	row.Nagare.Text, row.EBPF.Text = texts[SideNagare], texts[SideEBPF]
	r.report.Rows = append(r.report.Rows, row)
}

// memWindow fills tb's agents with n flows and returns the row's text
// and the agents' RSS in MB.
func (r *runner) memWindow(tb *testbed, n int) (string, float64, error) {
	if err := tb.place(r.lab, ModeSplit); err != nil {
		return "", 0, err
	}
	before, err := tb.agentMem()
	if err != nil {
		return "", 0, err
	}
	rate := r.cfg.MemRate
	fill := time.Duration(float64(n) / rate * float64(time.Second))
	g := genSpec{newFlows: true, rate: rate, start: r.nextFlow, cycle: uint64(n)}
	r.nextFlow += uint64(n) + 1000
	gen, err := r.startGen(tb, g, 3*fill+2*time.Second)
	if err != nil {
		return "", 0, err
	}
	defer r.lab.forget(gen)
	defer gen.stop()
	var flows float64
	deadline := time.Now().Add(3 * fill)
	for {
		if err := sleep(r.ctx, 500*time.Millisecond); err != nil {
			return "", 0, err
		}
		c, err := tb.agentCounters()
		if err != nil {
			return "", 0, err
		}
		flows = c[metricFlows]
		if flows >= float64(n) || time.Now().After(deadline) {
			break
		}
	}
	after, err := tb.agentMem()
	if err != nil {
		return "", 0, err
	}
	if r.cfg.Profile != "" {
		for _, a := range tb.agents {
			path := filepath.Join(r.cfg.Profile, fmt.Sprintf("%s-%s-heap-%s.pprof", tb.side, tb.kase, a.name))
			if err := a.saveHeapProfile(path); err != nil {
				r.logf("%s: heap profile: %v", a.name, err)
			}
		}
	}
	gen.stop()
	// The next windows start once these flows have expired (idle
	// timeout 10 s): they measure flow setup into an empty table.
	if err := tb.waitFlowsBelow(r, 1000, 30*time.Second); err != nil {
		return "", 0, err
	}
	if flows < 0.9*float64(n) {
		return "", 0, fmt.Errorf("the agents hold %.0f flows after %s at %s flows/s, want %d", flows, 3*fill, fmtCount(rate), n)
	}
	mb := func(b uint64) float64 { return float64(b) / (1 << 20) }
	text := fmt.Sprintf("%.0f MB (%s flows; %.0f MB before, peak %.0f)", mb(after.rss), fmtCount(flows), mb(before.rss), mb(after.hwm))
	r.logf("%-6s %-6s memory: %s", tb.side, tb.kase, text)
	return text, mb(after.rss), nil
}

// mem is the agents' resident set now and at its peak, summed.
type mem struct{ rss, hwm uint64 }

func (tb *testbed) agentMem() (mem, error) {
	var m mem
	for _, a := range tb.agents {
		rss, hwm := procMem(a.proc.pid())
		if rss == 0 {
			return m, fmt.Errorf("agent %s: no resident set (exited?)", a.name)
		}
		m.rss += rss
		m.hwm += hwm
	}
	return m, nil
}

// waitFlowsBelow waits until tb's agents hold fewer than n flows, at most
// for d.
func (tb *testbed) waitFlowsBelow(r *runner, n float64, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		c, err := tb.agentCounters()
		if err != nil {
			return err
		}
		if c[metricFlows] < n || time.Now().After(deadline) {
			return nil
		}
		if err := sleep(r.ctx, time.Second); err != nil {
			return err
		}
	}
}

// saveHeapProfile writes the agent's heap profile (its --pprof endpoint)
// to path: what holds the memory the row reports.
func (a *agentProc) saveHeapProfile(path string) error {
	resp, err := http.Get(strings.TrimSuffix(a.metrics, "/metrics") + "/debug/pprof/heap")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET heap profile: %s", resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
