//go:build linux

package harness

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Metrics scrapes the agent's Prometheus endpoint.
func (h *Hypervisor) Metrics() (Metrics, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + h.MetricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("metrics of %s: %s", h.Name, resp.Status)
	}
	return ParseMetrics(resp.Body)
}

// Metrics are samples of the Prometheus text format, keyed by the series as
// written: `name` or `name{label="v",…}`.
type Metrics map[string]float64

// ParseMetrics reads the Prometheus text exposition format.
func ParseMetrics(r io.Reader) (Metrics, error) {
	m := Metrics{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			return nil, fmt.Errorf("bad metrics line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("bad metrics line %q: %w", line, err)
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// Sum adds the samples of a metric over all its label sets.
func (m Metrics) Sum(name string) float64 {
	var s float64
	for k, v := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			s += v
		}
	}
	return s
}

// Has reports whether the metric has at least one sample.
func (m Metrics) Has(name string) bool {
	for k := range m {
		if k == name || strings.HasPrefix(k, name+"{") {
			return true
		}
	}
	return false
}

// Label returns the sample of name whose label key has value.
func (m Metrics) Label(name, key, value string) float64 {
	want := key + `="` + value + `"`
	for k, v := range m {
		if strings.HasPrefix(k, name+"{") && strings.Contains(k, want) {
			return v
		}
	}
	return 0
}
