package gateway

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	probesSent, probeErrors, probesAnswered, reports, unsolicited, malformed prometheus.Counter
	gatewaysLost, arpProbes                                                  prometheus.Counter
	transitions                                                              *prometheus.CounterVec
	deadUplinks                                                              prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "nagare", Subsystem: "gateway", Name: name, Help: help})
	}
	m := &metrics{
		probesSent:     c("probes_sent_total", "Liveness probes sent to gateways over the tunnels."),
		probeErrors:    c("probe_errors_total", "Liveness probes the datapath could not send."),
		probesAnswered: c("probes_answered_total", "Probes of other hosts this host answered with a report of its uplinks."),
		reports:        c("reports_total", "Reports received from probed gateways."),
		unsolicited:    c("reports_unknown_total", "Reports from hosts this host does not probe (dropped)."),
		malformed:      c("malformed_total", "Probe packets that did not decode (dropped)."),
		gatewaysLost:   c("lost_total", "Times a probed gateway stopped answering."),
		arpProbes:      c("arp_probes_total", "ARP probes of static uplinks' next hops."),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "nagare", Subsystem: "gateway",
			Name: "uplink_transitions_total", Help: "Uplinks bound here going up or down."}, []string{"to"}),
		deadUplinks: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "nagare", Subsystem: "gateway",
			Name: "dead_uplinks", Help: "Uplinks this host does not route through now."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, col := range []prometheus.Collector{m.probesSent, m.probeErrors, m.probesAnswered, m.reports, m.unsolicited,
		m.malformed, m.gatewaysLost, m.arpProbes, m.transitions, m.deadUplinks} {
		if err := reg.Register(col); err != nil {
			return nil, fmt.Errorf("register gateway metrics: %w", err)
		}
	}
	return m, nil
}
