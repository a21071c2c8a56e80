package nsdb

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/model"
)

// datapathPrefix holds each agent's datapath status, written under the
// agent's lease: it disappears when the agent dies.
const datapathPrefix = "/nagare/v1/state/datapath/"

// DatapathStatusKey is where the agent on hostID publishes its status.
func DatapathStatusKey(hostID string) string { return datapathPrefix + hostID }

// The status shapes live in pkg/agentstatus, where the CLI can read them
// without linking etcd. These names stay for the NSDB's own readers.
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
