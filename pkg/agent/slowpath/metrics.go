package slowpath

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/nagare/nagare/pkg/sim"
)

// metrics are the slow path's Prometheus metrics. Counters the miss path
// touches are resolved once, so recording is an atomic add.
type metrics struct {
	upcalls      prometheus.Counter
	installStale prometheus.Counter
	generated    prometheus.Counter
	dhcpReplies  prometheus.Counter
	simSeconds   prometheus.Histogram
	simDrops     [64]prometheus.Counter // by sim.DropReason
	agentDrops   *prometheus.CounterVec
	simDropsVec  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{}
	m.upcalls = prometheus.NewCounter(prometheus.CounterOpts{Name: "nagare_agent_upcalls_total", Help: "Packets that missed the flow table and were handled by the agent."})
	m.generated = prometheus.NewCounter(prometheus.CounterOpts{Name: "nagare_agent_generated_packets_total", Help: "Packets the agent generated (ARP/ND replies and requests, ICMP errors, echo replies, resets)."})
	m.installStale = prometheus.NewCounter(prometheus.CounterOpts{Name: "nagare_agent_flows_not_installed_stale_total", Help: "Flows not installed because an invalidation came during their simulation (the packet was forwarded; the next one is simulated again)."})
	m.dhcpReplies = prometheus.NewCounter(prometheus.CounterOpts{Name: "nagare_agent_dhcp_replies_total", Help: "DHCP replies sent."})
	m.simSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "nagare_agent_simulation_seconds", Help: "Time to simulate one packet.",
		Buckets: prometheus.ExponentialBuckets(250e-9, 2, 16)})
	simDrops := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nagare_agent_simulation_drops_total", Help: "Packets the simulation dropped, by reason."}, []string{"reason"})
	for r := sim.DropReason(1); int(r) < len(m.simDrops); r++ {
		if r.String() == "unknown" {
			break
		}
		m.simDrops[r] = simDrops.WithLabelValues(r.String())
	}
	m.simDropsVec = simDrops
	m.agentDrops = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "nagare_agent_drops_total", Help: "Packets the agent dropped outside the simulation, by reason."}, []string{"reason"})
	if reg != nil {
		for _, c := range []prometheus.Collector{m.upcalls, m.installStale, m.generated, m.dhcpReplies, m.simSeconds, simDrops, m.agentDrops} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}

func (m *metrics) simDrop(r sim.DropReason) {
	if int(r) < len(m.simDrops) && m.simDrops[r] != nil {
		m.simDrops[r].Inc()
	}
}

func (m *metrics) drop(reason string) { m.agentDrops.WithLabelValues(reason).Inc() }

// DropCounts reads the drop counters by reason, the non-zero ones: the
// simulation's and the slow path's own, as Prometheus holds them.
func (h *Handler) DropCounts() (simulation, agent map[string]uint64) {
	return countsByReason(h.met.simDropsVec), countsByReason(h.met.agentDrops)
}

func countsByReason(v *prometheus.CounterVec) map[string]uint64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { v.Collect(ch); close(ch) }() // owned: drained below until Collect is done
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
