package bgp

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	flaps, prefixLimit, routeChanges, dampened, punted, bfdDown prometheus.Counter
	rejected                                                    *prometheus.CounterVec
	learned, established                                        prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "nagare", Subsystem: "bgp", Name: name, Help: help})
	}
	g := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nagare", Subsystem: "bgp", Name: name, Help: help})
	}
	m := &metrics{
		flaps:        c("session_flaps_total", "BGP sessions of this host's uplinks that went down after being established."),
		prefixLimit:  c("prefix_limit_total", "BGP peers shut down for announcing more than max-prefixes."),
		routeChanges: c("route_changes_total", "Best-path changes (announcements and withdrawals) from BGP peers."),
		dampened:     c("routes_dampened_total", "Learned prefixes suppressed for flapping."),
		punted:       c("session_packets_punted_total", "Packets of BGP and BFD sessions steered between an uplink and its speaker by the slow path."),
		bfdDown:      c("bfd_down_total", "BFD sessions that went down after being up (their BGP session is reset)."),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "nagare", Subsystem: "bgp", Name: "routes_rejected_total",
			Help: "Routes announced by BGP peers and not learned, by reason."}, []string{"reason"}),
		learned:     g("learned_routes", "Learned routes this host publishes."),
		established: g("sessions_established", "BGP sessions of this host's uplinks established now."),
	}
	if reg == nil {
		return m, nil
	}
	for _, col := range []prometheus.Collector{m.flaps, m.prefixLimit, m.routeChanges, m.dampened, m.punted, m.bfdDown, m.rejected, m.learned, m.established} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register BGP metrics: %w", err)
		}
	}
	return m, nil
}
