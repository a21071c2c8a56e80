package statesync

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/flowstate"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// natPublishEvery is how often the agent looks for changed NAT bindings;
// unchanged ones are written again every natRepublishEvery, so a record
// lost with an old lease comes back.
const (
	natPublishEvery   = 2 * time.Second
	natRepublishEvery = 30 * time.Second
)

// publishNAT publishes this host's NAT bindings (SNAT and DNAT entries
// of the table) under the host's lease, every natPublishEvery when they
// changed, for `show ip nat translations`. Expiry times are wall-clock:
// the table's clock is time.Now().UnixNano(), as the miss path's is.
func (s *Sync) publishNAT(ctx context.Context) error {
	p := &natPublisher{db: s.cfg.DB, host: s.cfg.HostID, tbl: s.table, lease: s.cfg.Lease, routers: map[uint64]string{}}
	t := time.NewTicker(natPublishEvery)
	defer t.Stop()
	for {
		if err := p.publish(ctx, time.Now()); err != nil && ctx.Err() == nil {
			s.cfg.Log.Debug("publish NAT translations", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

type natPublisher struct {
	db      NSDB
	host    string
	tbl     *flowstate.Table
	lease   func() nsdb.LeaseID
	routers map[uint64]string // zone (router tag) → router id
	last    []agentstatus.NATTranslation
	sentAt  time.Time // zero: never written
}

// publish writes the bindings if they differ from what was last written,
// under the current lease (a lease lost and replaced meanwhile loses the
// record with it: the next publish writes it under the new one).
func (p *natPublisher) publish(ctx context.Context, now time.Time) error {
	recs, truncated := natSnapshot(p.tbl, now)
	p.nameRouters(ctx, recs)
	if !p.sentAt.IsZero() && now.Sub(p.sentAt) < natRepublishEvery && slices.Equal(recs, p.last) {
		return nil
	}
	t := &agentstatus.NATTranslations{HostID: p.host, Updated: now.UTC(), Truncated: truncated, Translations: recs}
	if err := p.db.PutNATTranslations(ctx, p.host, p.lease(), t); err != nil {
		return err
	}
	p.last, p.sentAt = recs, now
	return nil
}

// nameRouters fills RouterID from the zones, reading the routers again
// only when a zone is unknown.
func (p *natPublisher) nameRouters(ctx context.Context, recs []agentstatus.NATTranslation) {
	listed := false
	for i := range recs {
		z, err := strconv.ParseUint(recs[i].Zone, 16, 64)
		if err != nil {
			continue
		}
		id, ok := p.routers[z]
		if !ok && !listed {
			listed = true
			if rs, _, err := p.db.List(ctx, model.RouterKind, "", ""); err == nil {
				for _, r := range rs {
					rid := r.GetMeta().ID
					p.routers[sim.ObjectTag(model.RouterKind, rid)] = rid
				}
			}
			id = p.routers[z]
		}
		recs[i].RouterID = id
	}
}

// natSnapshot returns the table's NAT bindings as records, sorted, at most
// nsdb.MaxNATTranslations, and how many more there were. The table's lock
// is held only to copy entries.
func natSnapshot(tbl *flowstate.Table, now time.Time) ([]agentstatus.NATTranslation, int) {
	type item struct {
		e   flowstate.Entry
		ttl time.Duration
	}
	var (
		items     []item
		truncated int
	)
	add := func(e *flowstate.Entry, ttl time.Duration) bool {
		if e.Fwd.Type != flowstate.KeyFwdSNAT && e.Fwd.Type != flowstate.KeyFwdDNAT {
			return true
		}
		if len(items) >= nsdb.MaxNATTranslations {
			truncated++
			return true
		}
		items = append(items, item{*e, ttl})
		return true
	}
	tbl.RangeTTL(now.UnixNano(), add)
	recs := make([]agentstatus.NATTranslation, 0, len(items))
	for i := range items {
		recs = append(recs, natRecord(&items[i].e, items[i].ttl, now))
	}
	slices.SortFunc(recs, compareNAT)
	return recs, truncated
}

// natRecord renders a binding in Cisco's columns (see agentstatus.NATTranslation).
func natRecord(e *flowstate.Entry, ttl time.Duration, now time.Time) agentstatus.NATTranslation {
	k := &e.Fwd
	ports := k.Proto == packet.IPProtoTCP || k.Proto == packet.IPProtoUDP || k.Echo != 0
	ep := func(a netip.Addr, port uint16) string {
		if !ports {
			return a.String()
		}
		return netip.AddrPortFrom(a, port).String()
	}
	tr, trPort := e.Translated()
	r := agentstatus.NATTranslation{Zone: fmt.Sprintf("%016x", k.Zone), Protocol: protoName(k.Proto), State: e.State.Phase().String()}
	if k.Type == flowstate.KeyFwdSNAT {
		r.Type = "snat"
		r.InsideLocal = ep(k.SrcAddr(), k.SrcPort)
		r.InsideGlobal = ep(tr, trPort)
		r.OutsideLocal = ep(k.DstAddr(), k.DstPort)
	} else {
		r.Type = "dnat"
		r.InsideGlobal = ep(k.DstAddr(), k.DstPort)
		r.InsideLocal = ep(tr, trPort)
		r.OutsideLocal = ep(k.SrcAddr(), k.SrcPort)
	}
	r.OutsideGlobal = r.OutsideLocal
	if k.Type == flowstate.KeyFwdSNAT && k.Echo != 0 {
		// The echo identifier is both "ports": outside, the peer's side
		// carries the translated one, as Cisco prints PAT echo bindings.
		r.OutsideGlobal = ep(k.DstAddr(), trPort)
	}
	// Whole seconds, so that a binding refreshed within the same second
	// does not count as a change.
	r.Expires = now.Add(ttl).UTC().Truncate(time.Second)
	return r
}

func protoName(p uint8) string {
	switch p {
	case packet.IPProtoTCP:
		return "tcp"
	case packet.IPProtoUDP:
		return "udp"
	case packet.IPProtoICMPv4:
		return "icmp"
	case packet.IPProtoICMPv6:
		return "icmp6"
	}
	return strconv.Itoa(int(p))
}

func compareNAT(a, b agentstatus.NATTranslation) int {
	return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.Type, b.Type), cmp.Compare(a.Protocol, b.Protocol),
		cmp.Compare(a.InsideGlobal, b.InsideGlobal), cmp.Compare(a.InsideLocal, b.InsideLocal),
		cmp.Compare(a.OutsideLocal, b.OutsideLocal), a.Expires.Compare(b.Expires))
}
