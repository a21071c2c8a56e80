package nsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// datapathPrefix holds each agent's datapath status, written under the
// agent's lease: it disappears when the agent dies.
const datapathPrefix = "/nagare/v1/state/datapath/"

// DatapathStatusKey is where the agent on hostID publishes its status.
func DatapathStatusKey(hostID string) string { return datapathPrefix + hostID }

// The status shapes live in pkg/agentstatus, where the CLI can read them
// without linking etcd. These names stay until pkg/agent uses those.
type (
	DatapathStatus  = agentstatus.Datapath
	FlowStateStatus = agentstatus.FlowState
	TunnelCounters  = agentstatus.Tunnel
	DatapathPort    = agentstatus.Port
)

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
