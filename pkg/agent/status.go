package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/nagare/nagare/pkg/agent/slowpath"
	"github.com/nagare/nagare/pkg/agent/statesync"
	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/nsdb"
)

// statusEvery is how often the agent publishes its datapath status.
const statusEvery = 2 * time.Second

// maxDumpedFlows bounds the flows listed in a published status.
const maxDumpedFlows = 100

// statusPublisher writes what mm-dpctl used to print — the datapath, its
// counters, its ports and a sample of its flows — to the NSDB under the
// host's lease, where the server (and so the CLI) can read it from any
// host.
type statusPublisher struct {
	db interface {
		PutDatapathStatus(ctx context.Context, st *agentstatus.Datapath, lease nsdb.LeaseID) error
	}
	dp                       datapath.Datapath
	host, hostName, datapath string
	lease                    func() nsdb.LeaseID
	state                    *statesync.Sync
	slow                     *slowpath.Handler
	log                      *slog.Logger
}

func (p *statusPublisher) run(ctx context.Context) error {
	t := time.NewTicker(statusEvery)
	defer t.Stop()
	for {
		// A write under a lease that just ended fails; the next one goes
		// under the new lease.
		if err := p.db.PutDatapathStatus(ctx, p.status(), p.lease()); err != nil && ctx.Err() == nil {
			p.log.Debug("publish datapath status", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (p *statusPublisher) status() *agentstatus.Datapath {
	s := p.dp.Stats()
	st := &agentstatus.Datapath{
		HostID: p.host, HostName: p.hostName, Datapath: p.datapath, Updated: time.Now().UTC(),
		Flows: s.Flows, Hits: s.Hits, Misses: s.Misses, Lost: s.Lost, Drops: s.Drops,
		FlowsInstalled: s.FlowsInstalled, FlowsExpired: s.FlowsExpired, FlowsInvalidated: s.FlowsInvalidated,
		VXLAN:     agentstatus.Tunnel{RxPackets: s.VXLAN.RxPackets, TxPackets: s.VXLAN.TxPackets},
		GRE:       agentstatus.Tunnel{RxPackets: s.GRE.RxPackets, TxPackets: s.GRE.TxPackets},
		FlowState: p.state.Status(),
	}
	// The dashboard graphs these without scraping every agent.
	st.SimulationDrops, st.AgentDrops = p.slow.DropCounts()
	for _, port := range s.Ports {
		st.Ports = append(st.Ports, agentstatus.Port{PortID: port.PortID, Index: port.Index, Interface: port.Interface,
			RxPackets: port.RxPackets, TxPackets: port.TxPackets, RxDropped: port.RxDropped, TxDropped: port.TxDropped})
	}
	// Only the first flows: a walk of a full table every status period
	// would cost more than the flows it reports.
	datapath.SomeFlows(p.dp, maxDumpedFlows, func(f *datapath.FlowInfo) {
		st.FlowDump = append(st.FlowDump, f.String())
	})
	return st
}
