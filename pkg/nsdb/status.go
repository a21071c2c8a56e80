package nsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// datapathPrefix holds each agent's datapath status, written under the
// agent's lease: it disappears when the agent dies.
const datapathPrefix = "/nagare/v1/state/datapath/"

// DatapathStatusKey is where the agent on hostID publishes its status.
func DatapathStatusKey(hostID string) string { return datapathPrefix + hostID }

// DatapathStatus is what an agent publishes about its datapath: the
// counters mm-dpctl printed, its ports and a sample of its flows.
type DatapathStatus struct {
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
	VXLAN            TunnelCounters    `json:"vxlan"`
	GRE              TunnelCounters    `json:"gre"`
	Drops            map[string]uint64 `json:"drops,omitempty"`
	Ports            []DatapathPort    `json:"ports"`
	FlowDump         []string          `json:"flow_dump,omitempty"`
	FlowState        *FlowStateStatus  `json:"flow_state,omitempty"`

	// SimulationDrops and AgentDrops are the agent's own drop counters by
	// reason, the values of its Prometheus counters
	// nagare_agent_simulation_drops_total (what the simulation dropped: a
	// rule, no route, …) and nagare_agent_drops_total (what the agent
	// dropped outside it); Drops are the datapath's.
	SimulationDrops map[string]uint64 `json:"simulation_drops,omitempty"`
	AgentDrops      map[string]uint64 `json:"agent_drops,omitempty"`
}

// FlowStateStatus is the agent's connection-tracking and NAT table: its
// size, bounds, refusals (how exhaustion shows) and flow-state packets.
type FlowStateStatus struct {
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
}

// TunnelCounters counts one tunnel endpoint's packets.
type TunnelCounters struct {
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
}

// DatapathPort is one bound port of a datapath.
type DatapathPort struct {
	PortID    string `json:"port_id"`
	Index     int32  `json:"index"`
	Interface string `json:"interface"`
	RxPackets uint64 `json:"rx_packets"`
	TxPackets uint64 `json:"tx_packets"`
	RxDropped uint64 `json:"rx_dropped"`
	TxDropped uint64 `json:"tx_dropped"`
}

// DatapathStatus reads the status the agent on hostID last published; it
// wraps model.ErrNotFound when no agent runs there.
func (s *Store) DatapathStatus(ctx context.Context, hostID string) (*DatapathStatus, error) {
	resp, err := s.cli.Get(ctx, DatapathStatusKey(hostID))
	if err != nil {
		return nil, fmt.Errorf("read datapath status of host %s: %w", hostID, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("host %s has no running agent: %w", hostID, model.ErrNotFound)
	}
	var st DatapathStatus
	if err := json.Unmarshal(resp.Kvs[0].Value, &st); err != nil {
		return nil, fmt.Errorf("decode datapath status of host %s: %w", hostID, err)
	}
	return &st, nil
}

// MACPrefix holds the replicated MAC tables: one key per learned
// (bridge, vlan, mac) whose value is the port, written by the host that
// learned it under that host's liveness lease, so a dead host's entries
// vanish with it. Every agent watches the prefix, so a MAC learned on host A
// turns host B's floods into unicast (MidoNet kept the same table in
// ZooKeeper).
const MACPrefix = "/nagare/v1/state/mac/"

// LearnedMAC is one entry of a bridge's replicated MAC table.
type LearnedMAC struct {
	BridgeID string
	VLAN     uint16
	MAC      packet.MAC
	PortID   string
}

// Key is the entry's etcd key.
func (m LearnedMAC) Key() string {
	return fmt.Sprintf("%s%s/%d/%s", MACPrefix, m.BridgeID, m.VLAN, m.MAC)
}

// ParseMACKey parses an entry's key; the port is the key's value.
func ParseMACKey(key string) (LearnedMAC, bool) {
	rest, ok := strings.CutPrefix(key, MACPrefix)
	parts := strings.Split(rest, "/")
	if !ok || len(parts) != 3 {
		return LearnedMAC{}, false
	}
	vlan, err := strconv.ParseUint(parts[1], 10, 16)
	mac, err2 := packet.ParseMAC(parts[2])
	if err != nil || err2 != nil || mac.IsZero() {
		return LearnedMAC{}, false
	}
	return LearnedMAC{BridgeID: parts[0], VLAN: uint16(vlan), MAC: mac}, true
}

// LearnedMACs lists every bridge's learned MACs.
func (s *Store) LearnedMACs(ctx context.Context) ([]LearnedMAC, error) {
	resp, err := s.cli.Get(ctx, MACPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read learned MACs: %w", err)
	}
	out := make([]LearnedMAC, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if m, ok := ParseMACKey(string(kv.Key)); ok {
			m.PortID = string(kv.Value)
			out = append(out, m)
		}
	}
	return out, nil
}
