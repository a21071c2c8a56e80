package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/nagare/nagare/pkg/sim"
)

// metrics are the agent's Prometheus metrics. Counters the hot path touches
// are plain prometheus.Counter values resolved once, so recording is an
// atomic add; datapath counters are read from Stats at scrape time.
type metrics struct {
	reg              *prometheus.Registry
	upcalls          prometheus.Counter
	generated        prometheus.Counter
	dhcpReplies      prometheus.Counter
	flowsInvalidated prometheus.Counter
	simSeconds       prometheus.Histogram
	simDrops         [64]prometheus.Counter // by sim.DropReason
	agentDrops       *prometheus.CounterVec
	simDropsVec      *prometheus.CounterVec
}

func newMetrics(a *Agent) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.upcalls = prometheus.NewCounter(prometheus.CounterOpts{Name: "nagare_agent_upcalls_total", Help: "Packets that missed the flow table and were handled by the agent."})
	m.generated = prometheus.NewCounter(prometheus.CounterOpts{Name: "nagare_agent_generated_packets_total", Help: "Packets the agent generated (ARP/ND replies and requests, ICMP errors, echo replies, resets)."})
	m.dhcpReplies = prometheus.NewCounter(prometheus.CounterOpts{Name: "nagare_agent_dhcp_replies_total", Help: "DHCP replies sent."})
	m.flowsInvalidated = prometheus.NewCounter(prometheus.CounterOpts{Name: "nagare_agent_flows_invalidated_total", Help: "Flows removed because an object they depended on changed."})
	m.simSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nagare_agent_simulation_seconds", Help: "Time to simulate one packet.",
		Buckets: prometheus.ExponentialBuckets(250e-9, 2, 16)})
	simDrops := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nagare_agent_simulation_drops_total", Help: "Packets the simulation dropped, by reason."}, []string{"reason"})
	for r := sim.DropReason(1); int(r) < len(m.simDrops); r++ {
		if r.String() == "unknown" {
			break
		}
		m.simDrops[r] = simDrops.WithLabelValues(r.String())
	}
	m.agentDrops = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nagare_agent_drops_total", Help: "Packets the agent dropped outside the simulation, by reason."}, []string{"reason"})
	m.simDropsVec = simDrops
	m.reg.MustRegister(m.upcalls, m.generated, m.dhcpReplies, m.flowsInvalidated, m.simSeconds, simDrops, m.agentDrops, &dpCollector{a}, &fsCollector{a})
	return m
}

func (m *metrics) simDrop(r sim.DropReason) {
	if int(r) < len(m.simDrops) && m.simDrops[r] != nil {
		m.simDrops[r].Inc()
	}
}

func (m *metrics) drop(reason string) { m.agentDrops.WithLabelValues(reason).Inc() }

// dropCounts reads the drop counters by reason (the non-zero ones), for
// the status the agent publishes: the dashboard graphs them without
// scraping every agent.
func (m *metrics) dropCounts() (simulation, agent map[string]uint64) {
	return countsByReason(m.simDropsVec), countsByReason(m.agentDrops)
}

func countsByReason(v *prometheus.CounterVec) map[string]uint64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { v.Collect(ch); close(ch) }()
	var out map[string]uint64
	for c := range ch {
		var d dto.Metric
		if c.Write(&d) != nil || d.GetCounter().GetValue() == 0 {
			continue
		}
		for _, l := range d.GetLabel() {
			if l.GetName() == "reason" {
				if out == nil {
					out = map[string]uint64{}
				}
				out[l.GetValue()] = uint64(d.GetCounter().GetValue())
			}
		}
	}
	return out
}

func (m *metrics) serve(ctx context.Context, addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// dpCollector exports the datapath's counters at scrape time.
type dpCollector struct{ a *Agent }

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

func (c *dpCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHits, descMisses, descLost, descFlows, descInstalls, descTunnelRx, descTunnelTx, descDrops, descPortRx, descPortTx} {
		ch <- d
	}
}

func (c *dpCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.a.dp.Stats()
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
