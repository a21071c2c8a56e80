package reach

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	suspects, kept, cut, sent, sendErrors, replies prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Namespace: "nagare", Subsystem: "reach", Name: name, Help: help})
	}
	m := &metrics{
		suspects:   c("lease_ended_total", "Hosts whose lease ended, whose datapath was then probed."),
		kept:       c("kept_total", "Hosts whose lease ended but whose datapath answered: kept in the tunnels."),
		cut:        c("cut_total", "Hosts cut from the tunnels: lease ended and datapath silent."),
		sent:       c("echoes_sent_total", "Echo probes sent to datapaths of hosts whose lease ended."),
		sendErrors: c("echo_errors_total", "Echo probes the datapath could not send."),
		replies:    c("echo_replies_total", "Echo replies received."),
	}
	for _, x := range []prometheus.Collector{m.suspects, m.kept, m.cut, m.sent, m.sendErrors, m.replies} {
		if err := reg.Register(x); err != nil {
			return nil, fmt.Errorf("reach: register metrics: %w", err)
		}
	}
	return m, nil
}
