package bench

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// simBenchName is the Go benchmark of the simulation alone: one walk
// VM → bridge → router → bridge → VM with MACs and ARP learned.
const simBenchName = "BenchmarkSimulateBridgeRouterBridge"

// simBench runs simBenchName three times in SrcDir and reports the median
// walks per second, with ns and allocations per walk in the note.
func (r *runner) simBench() Row {
	row := Row{Case: "sim", Metric: "simulation alone (" + simBenchName + ")", Unit: unitWalks}
	fail := func(msg string) Row {
		r.logf("sim benchmark: %s", msg)
		row.Nagare.Err, row.Note = msg, "skipped: "+msg
		return row
	}
	if r.cfg.SrcDir == "" {
		return fail("no source tree (--src)")
	}
	if _, err := exec.LookPath("go"); err != nil {
		return fail("go not in PATH")
	}
	r.waitQuiet()
	ctx, cancel := context.WithTimeout(r.ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "^"+simBenchName+"$", "-benchmem", "-count", "3", "./pkg/sim")
	cmd.Dir = r.cfg.SrcDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fail(fmt.Sprintf("go test: %v: %s", err, firstLine(string(out))))
	}
	var walks, ns, allocs, bytes []float64
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, simBenchName) {
			continue
		}
		r.logf("%s", line)
		m := benchMetrics(line)
		if v, ok := m["ns/op"]; ok {
			ns = append(ns, v)
			walks = append(walks, 1e9/v)
		}
		allocs = append(allocs, m["allocs/op"])
		bytes = append(bytes, m["B/op"])
	}
	if len(walks) == 0 {
		return fail("no benchmark line in the output of go test")
	}
	row.Nagare = newStat(walks)
	row.Note = fmt.Sprintf("%.0f ns/walk, %g allocs (%g B)/walk", newStat(ns).Median, newStat(allocs).Median, newStat(bytes).Median)
	return row
}

// benchMetrics parses "BenchmarkX-2  1000  812 ns/op  0 B/op ..." into
// unit → value.
func benchMetrics(line string) map[string]float64 {
	f := strings.Fields(line)
	m := map[string]float64{}
	for i := 2; i+1 < len(f); i += 2 {
		if v, err := strconv.ParseFloat(f[i], 64); err == nil {
			m[f[i+1]] = v
		}
	}
	return m
}
