package statesync

import "github.com/prometheus/client_golang/prometheus"

// collector exports the table's counters at scrape time.
type collector struct{ s *Sync }

var (
	descEntries   = prometheus.NewDesc("nagare_flowstate_entries", "Connection-tracking and NAT entries in the table.", nil, nil)
	descMax       = prometheus.NewDesc("nagare_flowstate_max_entries", "Bound of the table (--conntrack-max).", nil, nil)
	descZones     = prometheus.NewDesc("nagare_flowstate_zones", "Zones (devices) with entries.", nil, nil)
	descRefused   = prometheus.NewDesc("nagare_flowstate_refused_total", "Entries refused, by reason: full (--conntrack-max), zone-full (--conntrack-zone-max), exists (a key clash).", []string{"reason"}, nil)
	descInserted  = prometheus.NewDesc("nagare_flowstate_inserted_total", "Entries created by simulations on this host.", nil, nil)
	descImported  = prometheus.NewDesc("nagare_flowstate_imported_total", "Entries imported from peers' state packets (new or refreshed) and restored.", nil, nil)
	descExpired   = prometheus.NewDesc("nagare_flowstate_expired_total", "Entries removed because their lifetime ran out.", nil, nil)
	descPorts     = prometheus.NewDesc("nagare_flowstate_nat_ports_in_use", "SNAT ports held by this host's bindings.", nil, nil)
	descBlocks    = prometheus.NewDesc("nagare_flowstate_nat_blocks_leased", "NAT port blocks this host holds.", nil, nil)
	descExhausted = prometheus.NewDesc("nagare_flowstate_nat_ports_exhausted_total", "SNAT allocations that found no free port.", nil, nil)
	descPackets   = prometheus.NewDesc("nagare_flowstate_packets_total", "Flow-state packets, by event: sent, send-error, received, malformed.", []string{"event"}, nil)
	descImportRef = prometheus.NewDesc("nagare_flowstate_import_refused_total", "Entries of peers' state packets the table refused (full, zone full, clash).", nil, nil)
	descOffloaded = prometheus.NewDesc("nagare_flowstate_offloaded_entries", "Entries the kernel datapath tracks itself.", nil, nil)
	descOffBytes  = prometheus.NewDesc("nagare_flowstate_offload_bytes_per_entry", "Kernel memory one offloaded entry takes (its map, preallocated, divided by its capacity).", nil, nil)
	descOffMisses = prometheus.NewDesc("nagare_flowstate_offload_misses_total", "Packets of connection flows that went to the agent, by reason: missing (the kernel dropped the entry), expired (its lifetime ran out in the kernel).", []string{"reason"}, nil)
	descOffErrors = prometheus.NewDesc("nagare_flowstate_offload_errors_total", "Failures to write or read the kernel's connection map.", nil, nil)
)

// Collector exports the table's metrics.
func (s *Sync) Collector() prometheus.Collector { return collector{s} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEntries, descMax, descZones, descRefused, descInserted, descImported,
		descExpired, descPorts, descBlocks, descExhausted, descPackets, descImportRef, descOffloaded, descOffBytes,
		descOffMisses, descOffErrors} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	st := s.table.Stats()
	g := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	k := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	g(descEntries, float64(st.Entries))
	g(descMax, float64(s.maxEntries()))
	g(descZones, float64(st.Zones))
	k(descRefused, st.RefusedFull, "full")
	k(descRefused, st.RefusedZoneFull, "zone-full")
	k(descRefused, st.RefusedExists, "exists")
	k(descInserted, st.Inserted)
	k(descImported, st.Imported)
	k(descExpired, st.Expired)
	g(descPorts, float64(st.PortsInUse))
	g(descBlocks, float64(st.BlocksLeased))
	k(descExhausted, st.PortsExhausted)
	k(descPackets, s.count.sent.Load(), "sent")
	k(descPackets, s.count.sendErrors.Load(), "send-error")
	k(descPackets, s.count.received.Load(), "received")
	k(descPackets, s.count.malformed.Load(), "malformed")
	k(descImportRef, s.count.importRefused.Load())
	if s.cfg.Offload != nil {
		c := s.cfg.Offload.ConntrackStats()
		g(descOffloaded, float64(c.Entries))
		g(descOffBytes, float64(c.BytesPerEntry))
		k(descOffMisses, c.Missing, "missing")
		k(descOffMisses, c.Expired, "expired")
		k(descOffErrors, s.count.offloadErrors.Load())
	}
}
