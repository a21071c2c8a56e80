package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nagare/nagare/pkg/agent/slowpath"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flowstate"
)

// countedFlows is the datapath as the feature packages see it: every
// flow they invalidate is counted, and every invalidation starts a new
// generation, so that the slow path does not install a flow simulated
// from what an invalidation has since changed (slowpath.Generational).
type countedFlows struct {
	datapath.Datapath
	// mu orders conditional installs (read) against invalidations
	// (write); gens changes only under it, and gen, its current
	// generation, is read without it.
	mu          sync.RWMutex
	gens        slowpath.Generations
	gen         atomic.Uint64
	invalidated prometheus.Counter
}

func newCountedFlows(dp datapath.Datapath, reg prometheus.Registerer) (*countedFlows, error) {
	c := &countedFlows{Datapath: dp, invalidated: prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nagare_agent_flows_invalidated_total", Help: "Flows removed because an object they depended on changed."})}
	if err := reg.Register(c.invalidated); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *countedFlows) Invalidate(tags ...uint64) int {
	n, _ := c.InvalidateGen(tags...)
	return n
}

// InvalidateGen implements statesync.GenInvalidator.
func (c *countedFlows) InvalidateGen(tags ...uint64) (int, uint64) {
	c.mu.Lock()
	g := c.gens.Advance(tags)
	c.gen.Store(g)
	n := c.Datapath.Invalidate(tags...)
	c.mu.Unlock()
	c.invalidated.Add(float64(n))
	return n, g
}

func (c *countedFlows) Flush() int {
	c.mu.Lock()
	c.gen.Store(c.gens.AdvanceAll())
	n := c.Datapath.Flush()
	c.mu.Unlock()
	c.invalidated.Add(float64(n))
	return n
}

// LiveState implements datapath.StateLister: the flow-state sweep goes
// through this wrapper, which would hide the datapath's own.
func (c *countedFlows) LiveState(since time.Time, fn func(state []flowstate.Key)) {
	datapath.LiveState(c.Datapath, since, fn)
}

// Generation implements slowpath.Generational.
func (c *countedFlows) Generation() uint64 { return c.gen.Load() }

// InstallAt implements slowpath.Generational: it installs spec only if no
// invalidation since generation gen but skip may have removed a flow with
// one of its tags.
func (c *countedFlows) InstallAt(gen, skip uint64, spec *datapath.FlowSpec) (bool, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.gen.Load() != gen && c.gens.Stale(gen, skip, spec.Tags) {
		return false, nil
	}
	return true, c.Datapath.Install(spec)
}

// serveMetrics serves the Prometheus endpoint until ctx is done, and with
// withPprof Go's profiles under /debug/pprof/ (off by default: a heap
// profile shows what the agent holds).
func serveMetrics(ctx context.Context, addr string, g prometheus.Gatherer, withPprof bool) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/", promhttp.HandlerFor(g, promhttp.HandlerOpts{})) // any path, as before
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	stopped := make(chan struct{})
	go func() { // owned: serveMetrics waits for it
		defer close(stopped)
		<-ctx.Done()
		_ = srv.Close()
	}()
	err = srv.Serve(l)
	if !errors.Is(err, http.ErrServerClosed) {
		_ = srv.Close()
	} else {
		err = nil
	}
	<-stopped
	return err
}

// dpCollector exports the datapath's counters at scrape time.
type dpCollector struct{ dp datapath.Datapath }

var (
	descHits     = prometheus.NewDesc("nagare_datapath_hits_total", "Packets that matched a flow.", nil, nil)
	descMisses   = prometheus.NewDesc("nagare_datapath_misses_total", "Packets that missed the flow table.", nil, nil)
	descLost     = prometheus.NewDesc("nagare_datapath_lost_total", "Packets the kernel dropped before the datapath read them.", nil, nil)
	descFlows    = prometheus.NewDesc("nagare_datapath_flows", "Flows installed.", nil, nil)
	descInstalls = prometheus.NewDesc("nagare_datapath_flows_installed_total", "Flows installed since the datapath started.", nil, nil)
	descTunnelRx = prometheus.NewDesc("nagare_datapath_tunnel_rx_packets_total", "Tunnel packets received.", []string{"encap"}, nil)
	descTunnelTx = prometheus.NewDesc("nagare_datapath_tunnel_tx_packets_total", "Tunnel packets sent.", []string{"encap"}, nil)
	descDrops    = prometheus.NewDesc("nagare_datapath_drops_total", "Packets the datapath dropped, by reason.", []string{"reason"}, nil)
	descPortRx   = prometheus.NewDesc("nagare_datapath_port_rx_packets_total", "Packets received on a bound port.", []string{"port", "interface"}, nil)
	descPortTx   = prometheus.NewDesc("nagare_datapath_port_tx_packets_total", "Packets sent out of a bound port.", []string{"port", "interface"}, nil)
)

func (c dpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHits, descMisses, descLost, descFlows, descInstalls, descTunnelRx, descTunnelTx, descDrops, descPortRx, descPortTx} {
		ch <- d
	}
}

func (c dpCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.dp.Stats()
	ch <- prometheus.MustNewConstMetric(descHits, prometheus.CounterValue, float64(s.Hits))
	ch <- prometheus.MustNewConstMetric(descMisses, prometheus.CounterValue, float64(s.Misses))
	ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(s.Lost))
	ch <- prometheus.MustNewConstMetric(descFlows, prometheus.GaugeValue, float64(s.Flows))
	ch <- prometheus.MustNewConstMetric(descInstalls, prometheus.CounterValue, float64(s.FlowsInstalled))
	ch <- prometheus.MustNewConstMetric(descTunnelRx, prometheus.CounterValue, float64(s.VXLAN.RxPackets), "vxlan")
	ch <- prometheus.MustNewConstMetric(descTunnelTx, prometheus.CounterValue, float64(s.VXLAN.TxPackets), "vxlan")
	ch <- prometheus.MustNewConstMetric(descTunnelRx, prometheus.CounterValue, float64(s.GRE.RxPackets), "gre")
	ch <- prometheus.MustNewConstMetric(descTunnelTx, prometheus.CounterValue, float64(s.GRE.TxPackets), "gre")
	for reason, n := range s.Drops {
		ch <- prometheus.MustNewConstMetric(descDrops, prometheus.CounterValue, float64(n), reason)
	}
	for _, p := range s.Ports {
		ch <- prometheus.MustNewConstMetric(descPortRx, prometheus.CounterValue, float64(p.RxPackets), p.PortID, p.Interface)
		ch <- prometheus.MustNewConstMetric(descPortTx, prometheus.CounterValue, float64(p.TxPackets), p.PortID, p.Interface)
	}
}
