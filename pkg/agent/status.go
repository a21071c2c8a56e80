package agent

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nagare/nagare/pkg/agent/slowpath"
	"github.com/nagare/nagare/pkg/agent/statesync"
	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/nsdb"
)

// statusEvery is how often the agent looks at its datapath status, and
// so the fastest it republishes a status whose shape changed.
const statusEvery = 2 * time.Second

// countersEvery is how often the agent republishes a status whose only
// change is its counters (packets, hits, flows, drops): they change every
// second under traffic, and a thousand agents rewriting them every 2 s
// were most of etcd's writes. A reader that wants them current asks
// (nsdb.FreshDatapathStatus); metrics have them live.
const countersEvery = 30 * time.Second

// refreshEvery bounds how often readers' requests make the agent publish.
const refreshEvery = 500 * time.Millisecond

// maxDumpedFlows bounds the flows listed in a published status.
const maxDumpedFlows = 100

// statusPublisher writes what mm-dpctl used to print — the datapath, its
// counters, its ports and a sample of its flows — to the NSDB under the
// host's lease, where the server (and so the CLI) can read it from any
// host. It writes when the status's shape changes (at most every
// statusEvery), when a reader asks (at most every refreshEvery), when only
// counters changed at most every countersEvery, and never an unchanged
// status.
type statusPublisher struct {
	db interface {
		PutDatapathStatus(ctx context.Context, st *agentstatus.Datapath, lease nsdb.LeaseID) error
		WatchDatapathStatusRequests(ctx context.Context, hostID string, fn func() error) error
	}
	dp                       datapath.Datapath
	host, hostName, datapath string
	lease                    func() nsdb.LeaseID
	state                    *statesync.Sync
	slow                     *slowpath.Handler
	log                      *slog.Logger
	now                      func() time.Time // time.Now; tests move it

	last      *agentstatus.Datapath // the last status written, nil before the first
	lastLease nsdb.LeaseID          // the lease it was written under
	lastAt    time.Time             // when
}

func (p *statusPublisher) run(ctx context.Context) error {
	if p.now == nil {
		p.now = time.Now
	}
	// Readers' requests arrive on their own watch; one pending is enough.
	asked := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(ctx)
	watchDone := make(chan error, 1)
	go func() {
		watchDone <- p.db.WatchDatapathStatusRequests(ctx, p.host, func() error {
			select {
			case asked <- struct{}{}:
			default:
			}
			return nil
		})
	}()
	defer func() { cancel(); <-watchDone }()
	t := time.NewTicker(statusEvery)
	defer t.Stop()
	var lastAsked time.Time
	p.publish(ctx, false)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-watchDone:
			watchDone <- err // for the deferred receive
			return fmt.Errorf("watch status requests: %w", err)
		case <-t.C:
			p.publish(ctx, false)
		case <-asked:
			if wait := refreshEvery - p.now().Sub(lastAsked); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
			lastAsked = p.now()
			p.publish(ctx, true)
		}
	}
}

// publish writes the status if it is due: asked (a reader waits for it),
// under a new lease (the old one's key is gone), its shape changed, or its
// counters changed and the last write is countersEvery old.
func (p *statusPublisher) publish(ctx context.Context, asked bool) {
	p.write(ctx, p.status(), asked)
}

// write writes st if it is due (see publish).
func (p *statusPublisher) write(ctx context.Context, st *agentstatus.Datapath, asked bool) {
	lease, now := p.lease(), p.now()
	due := asked || p.last == nil || lease != p.lastLease
	if !due {
		shape, counters := statusChange(p.last, st)
		due = shape || (counters && now.Sub(p.lastAt) >= countersEvery)
	}
	if !due {
		return
	}
	// A write under a lease that just ended fails; the next one goes
	// under the new lease.
	st.Updated = now.UTC()
	if err := p.db.PutDatapathStatus(ctx, st, lease); err != nil {
		if ctx.Err() == nil {
			p.log.Debug("publish datapath status", "err", err)
		}
		return
	}
	p.last, p.lastLease, p.lastAt = st, lease, now
}

// statusChange compares two statuses: shape is what readers use to see
// what the datapath is (its identity, ports, flow-state bounds), counters
// everything else but the time.
func statusChange(a, b *agentstatus.Datapath) (shape, counters bool) {
	if a.HostName != b.HostName || a.Datapath != b.Datapath || len(a.Ports) != len(b.Ports) ||
		(a.FlowState == nil) != (b.FlowState == nil) {
		return true, true
	}
	for i := range a.Ports {
		x, y := a.Ports[i], b.Ports[i]
		if x.PortID != y.PortID || x.Index != y.Index || x.Interface != y.Interface {
			return true, true
		}
	}
	if fa, fb := a.FlowState, b.FlowState; fa != nil && (fa.MaxEntries != fb.MaxEntries ||
		fa.MaxPerZone != fb.MaxPerZone || fa.OffloadMax != fb.OffloadMax || fa.OffloadBytes != fb.OffloadBytes) {
		return true, true
	}
	ac, bc := *a, *b
	ac.Updated, bc.Updated = time.Time{}, time.Time{}
	return false, !reflect.DeepEqual(&ac, &bc)
}

func (p *statusPublisher) status() *agentstatus.Datapath {
	s := p.dp.Stats()
	st := &agentstatus.Datapath{
		HostID: p.host, HostName: p.hostName, Datapath: p.datapath,
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
	// In one order, so that a datapath listing its ports by a map's
	// order does not look changed.
	slices.SortFunc(st.Ports, func(a, b agentstatus.Port) int { return strings.Compare(a.PortID, b.PortID) })
	// Only the first flows: a walk of a full table every status period
	// would cost more than the flows it reports.
	datapath.SomeFlows(p.dp, maxDumpedFlows, func(f *datapath.FlowInfo) {
		st.FlowDump = append(st.FlowDump, f.String())
	})
	return st
}
