// Package agentstatus holds the shapes of what an agent publishes about
// its host — the datapath's counters, ports and flows, its NAT bindings —
// as the NSDB stores them (JSON, under the agent's lease), the API serves
// them and the CLI prints them. Plain data, free of etcd, so that the CLI
// decodes the very types the agent encodes without linking the NSDB client.
package agentstatus

import "time"

// Datapath is what an agent publishes about its datapath: the
// counters mm-dpctl printed, its ports and a sample of its flows.
type Datapath struct {
	HostID           string            `json:"host_id"`
	HostName         string            `json:"host_name"`
	Datapath         string            `json:"datapath"`
	Updated          time.Time         `json:"updated"`
	Flows            int               `json:"flows"`
	Hits             uint64            `json:"hits"`
	Misses           uint64            `json:"misses"`
	Lost             uint64            `json:"lost"`
	FlowsInstalled   uint64            `json:"flows_installed"`
	FlowsExpired     uint64            `json:"flows_expired"`
	FlowsInvalidated uint64            `json:"flows_invalidated"`
	VXLAN            Tunnel            `json:"vxlan"`
	GRE              Tunnel            `json:"gre"`
	Drops            map[string]uint64 `json:"drops,omitempty"`
	Ports            []Port            `json:"ports"`
	FlowDump         []string          `json:"flow_dump,omitempty"`
	FlowState        *FlowState        `json:"flow_state,omitempty"`

	// SimulationDrops and AgentDrops are the agent's own drop counters by
	// reason, the values of its Prometheus counters
	// nagare_agent_simulation_drops_total (what the simulation dropped: a
	// rule, no route, …) and nagare_agent_drops_total (what the agent
	// dropped outside it); Drops are the datapath's.
	SimulationDrops map[string]uint64 `json:"simulation_drops,omitempty"`
	AgentDrops      map[string]uint64 `json:"agent_drops,omitempty"`
}

// FlowState is the agent's connection-tracking and NAT table: its
// size, bounds, refusals (how exhaustion shows) and flow-state packets.
type FlowState struct {
	Entries         int    `json:"entries"`
	Zones           int    `json:"zones"`
	MaxEntries      int    `json:"max_entries"`
	MaxPerZone      int    `json:"max_per_zone"`
	RefusedFull     uint64 `json:"refused_full"`
	RefusedZoneFull uint64 `json:"refused_zone_full"`
	RefusedExists   uint64 `json:"refused_exists"`
	Imported        uint64 `json:"imported"`
	Expired         uint64 `json:"expired"`
	PortsInUse      int    `json:"nat_ports_in_use"`
	BlocksLeased    int    `json:"nat_blocks_leased"`
	PortsExhausted  uint64 `json:"nat_ports_exhausted"`
	StateSent       uint64 `json:"state_packets_sent"`
	StateReceived   uint64 `json:"state_packets_received"`
	StateMalformed  uint64 `json:"state_packets_malformed"`
	// Offloaded counts the entries the kernel datapath tracks itself
	// (datapath.ConntrackOffloader), at most OffloadMax, each taking
	// OffloadBytes of kernel memory; zero without offload.
	Offloaded    int `json:"offloaded,omitempty"`
	OffloadMax   int `json:"offload_max,omitempty"`
	OffloadBytes int `json:"offload_bytes_per_entry,omitempty"`
}

// Tunnel counts one tunnel endpoint's packets.
type Tunnel struct {
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
}

// Port is one bound port of a datapath.
type Port struct {
	PortID    string `json:"port_id"`
	Index     int32  `json:"index"`
	Interface string `json:"interface"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`
}

// NATTranslation is one NAT binding in the columns of Cisco's
// `show ip nat translations`. For an SNAT the inside local address is the
// original source, the inside global the translated source, and outside
// local and global are the destination; for a DNAT (outside to inside) the
// inside global is the original destination (the public address), the
// inside local the translated one, and outside is the source. Addresses
// are "ip:port" (the echo identifier for ICMP), bare for protocols without
// ports.
type NATTranslation struct {
	// Zone is the translating router's tag (sim.ObjectTag), hex; RouterID
	// the router when the agent could name it.
	Zone          string `json:"zone"`
	RouterID      string `json:"router_id,omitempty"`
	Type          string `json:"type"` // "snat" or "dnat"
	Protocol      string `json:"protocol"`
	InsideGlobal  string `json:"inside_global"`
	InsideLocal   string `json:"inside_local"`
	OutsideLocal  string `json:"outside_local"`
	OutsideGlobal string `json:"outside_global"`
	State         string `json:"state"`
	// Expires is when the binding ends unless traffic refreshes it.
	Expires time.Time `json:"expires"`
	// HostID is the host that holds the binding (filled by readers from
	// the key).
	HostID string `json:"host_id,omitempty"`
	// TTL is the lifetime left in seconds when read, -1 when the agent did
	// not say (filled by the API, not published).
	TTL int64 `json:"ttl_seconds"`
}

// NATTranslations is one host's published bindings.
type NATTranslations struct {
	HostID       string           `json:"host_id"`
	Updated      time.Time        `json:"updated"`
	Truncated    int              `json:"truncated,omitempty"` // bindings left out (nsdb.MaxNATTranslations)
	Translations []NATTranslation `json:"translations"`
}
