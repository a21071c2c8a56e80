package nsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nagare/nagare/pkg/model"
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

// PutDatapathStatus publishes the status of the agent on st.HostID under
// lease, so that it disappears when the agent dies.
func (s *Store) PutDatapathStatus(ctx context.Context, st *DatapathStatus, lease LeaseID) error {
	if !model.IsUUID(st.HostID) {
		return notFound(model.HostKind, st.HostID)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("nsdb: encode the datapath status of host %s: %w", st.HostID, err)
	}
	if _, err := s.cli.Put(ctx, DatapathStatusKey(st.HostID), string(b), withLease(lease)...); err != nil {
		return fmt.Errorf("nsdb: publish the datapath status of host %s: %w", st.HostID, err)
	}
	return nil
}
