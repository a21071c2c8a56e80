package agent

import (
	"context"
	"encoding/json"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/nsdb"
)

// statusEvery is how often the agent publishes its datapath status.
const statusEvery = 2 * time.Second

// maxDumpedFlows bounds the flows listed in a published status.
const maxDumpedFlows = 100

// publishStatus writes what mm-dpctl used to print — the datapath, its
// counters, its ports and a sample of its flows — to the NSDB under this
// host's lease, where the server (and so the CLI) can read it from any host.
func (a *Agent) publishStatus(ctx context.Context) error {
	t := time.NewTicker(statusEvery)
	defer t.Stop()
	for {
		st := a.status()
		b, err := json.Marshal(st)
		if err == nil {
			lease, err := a.cli.Lease.TimeToLive(ctx, a.currentLease())
			if err == nil && lease.TTL > 0 {
				_, _ = a.cli.Put(ctx, nsdb.DatapathStatusKey(a.hostID), string(b), clientv3.WithLease(a.currentLease()))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (a *Agent) currentLease() clientv3.LeaseID { return clientv3.LeaseID(a.macs.lease.Load()) }

func (a *Agent) status() *nsdb.DatapathStatus {
	s := a.dp.Stats()
	st := &nsdb.DatapathStatus{
		HostID: a.hostID, HostName: a.cfg.HostName, Datapath: a.cfg.Datapath, Updated: time.Now().UTC(),
		Flows: s.Flows, Hits: s.Hits, Misses: s.Misses, Lost: s.Lost, Drops: s.Drops,
		FlowsInstalled: s.FlowsInstalled, FlowsExpired: s.FlowsExpired, FlowsInvalidated: s.FlowsInvalidated,
		VXLAN:     nsdb.TunnelCounters{RxPackets: s.VXLAN.RxPackets, TxPackets: s.VXLAN.TxPackets},
		GRE:       nsdb.TunnelCounters{RxPackets: s.GRE.RxPackets, TxPackets: s.GRE.TxPackets},
		FlowState: a.flowStateStatus(),
	}
	st.SimulationDrops, st.AgentDrops = a.met.dropCounts()
	for _, p := range s.Ports {
		st.Ports = append(st.Ports, nsdb.DatapathPort{PortID: p.PortID, Index: p.Index, Interface: p.Interface,
			RxPackets: p.RxPackets, TxPackets: p.TxPackets, RxDropped: p.RxDropped, TxDropped: p.TxDropped})
	}
	a.dp.Flows(func(f *datapath.FlowInfo) {
		if len(st.FlowDump) < maxDumpedFlows {
			st.FlowDump = append(st.FlowDump, f.String())
		}
	})
	return st
}
