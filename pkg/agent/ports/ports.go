// Package ports binds the virtual ports assigned to this host to the
// datapath, and points the datapath's tunnels at the other hosts.
//
// A binding names an interface (a VM's tap, "tapXXXXXXXX-XX" as Nova and
// os-vif name it, or a veth) that another process owns: it may appear
// after the binding, and go away and come back (the VM reboots, or this
// host is a live migration's target). Ports follows the interfaces of the
// datapath's namespace as they change (a netlink link subscription, or
// the in-memory datapath's own events), attaches a bound port when its
// interface appears, detaches it — RemovePort, which removes its flows —
// when the interface goes, and attaches it again when it returns. A slow
// periodic relisting is the backstop for a missed event, and a failed
// attach is retried every second while the interface exists.
//
// A bound port's QoS policy (model.QoSPolicy's rate limits) is the
// datapath port's token buckets (SetPortQoS), set when it is attached
// and whenever the policy or the port's choice of it changes.
//
// A port keeps its datapath index for as long as its binding lasts:
// topology indexes shift whenever ports are added, datapath indexes must
// not. Bindings says which ports are attached, at which index. Across an
// agent restart over a datapath that adopted its predecessor's flows
// (datapath.PortAdopter), a port keeps the index it had: the adopted flows
// match on it.
package ports

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/nagare/nagare/internal/backoff"
	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/model"
)

// Datapath is what ports configures.
type Datapath interface {
	AddPort(cfg datapath.PortConfig) error
	RemovePort(portID string) error
	SetTunnels(cfg datapath.TunnelConfig) error
	SetPortQoS(portID string, q datapath.PortQoS) error
}

// Config wires the bindings of one host.
type Config struct {
	HostID string
	// TunnelIP is this host's underlay address; if invalid, its tunnel
	// zone membership's address.
	TunnelIP    netip.Addr
	VXLANPort   uint16
	UnderlayMTU int
	Datapath    Datapath
	// Links are the interfaces of the datapath's namespace.
	Links datapath.LinkSource
	// OnChange is told the bindings whenever a port is attached or
	// detached. It is called with the ports' lock held, so calls come in
	// order; it must not call back into Ports.
	OnChange func(*Bindings)
	// Resync is the period of the backstop relisting (default 30 s).
	Resync time.Duration
	Log    *slog.Logger
}

// Bindings are the ports attached to the datapath: read-only.
type Bindings struct {
	PortToDP map[string]int32 // port id → datapath index
	DPToPort map[int32]string // datapath index → port id
}

// bound is a port bound to this host, attached or waiting for its
// interface.
type bound struct {
	index    int32
	iface    string
	key      uint32
	attached bool
	ifindex  int              // the incarnation of the interface it is attached to; 0 unknown
	warned   bool             // a failed attach was logged (once per binding)
	qos      datapath.PortQoS // the limits of its QoS policy, set on the datapath port when attached
	policy   string           // its QoS policy's id
}

// Ports is this host's bindings.
type Ports struct {
	cfg Config

	mu     sync.Mutex
	bound  map[string]*bound // port id → binding
	nextDP int32
	// adopted are the ports of the predecessor whose flows the datapath
	// adopted, by interface, until bound again; reserved are their
	// indexes, which no other port is given.
	adopted  map[string]datapath.AdoptedPort
	reserved map[int32]bool
	// links are the interfaces known to exist, by name; listed is false
	// until the first listing arrived, and attaches are tried blindly.
	links  map[string]datapath.Link
	listed bool
	tun    datapath.TunnelConfig
	peers  *peerSet // the tunnel peers, followed incrementally
	cur    *Bindings
	synced uint64 // the version of the last snapshot synced
}

// New returns the bindings of cfg.HostID, none yet.
func New(cfg Config) *Ports {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	p := &Ports{cfg: cfg, bound: map[string]*bound{}, links: map[string]datapath.Link{},
		adopted: map[string]datapath.AdoptedPort{}, reserved: map[int32]bool{},
		cur: &Bindings{PortToDP: map[string]int32{}, DPToPort: map[int32]string{}}}
	if a, ok := cfg.Datapath.(datapath.PortAdopter); ok {
		for _, ap := range a.AdoptedPorts() {
			p.adopted[ap.Interface] = ap
			p.reserved[ap.Index] = true
		}
	}
	return p
}

// index picks the datapath index of a new binding: the one the port had
// in the adopted datapath (same interface, same tunnel key: the same
// virtual port), else the next one no port has or had there. p.mu is
// held.
func (p *Ports) index(x *model.Port) int32 {
	if ap, ok := p.adopted[x.InterfaceName]; ok {
		delete(p.adopted, x.InterfaceName) // claimed, or another port's
		if ap.TunnelKey == x.TunnelKey {
			return ap.Index
		}
	}
	for p.reserved[p.nextDP] {
		p.nextDP++
	}
	i := p.nextDP
	p.nextDP++
	return i
}

// Bindings are the ports attached now.
func (p *Ports) Bindings() *Bindings {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// Sync brings the bindings and tunnels in line with a topology snapshot:
// ports bound here are attached (if their interface exists), ports no
// longer bound here (or bound to another interface or key) detached.
func (p *Ports) Sync(s *mirror.Snapshot) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// After the first snapshot, only the ports a snapshot changed are
	// looked at: every host sees every port change, and nearly all are
	// other hosts' ports.
	full := s.Reset || s.Version != p.synced+1
	want := map[string]*model.Port{} // the ports to look at: bound here (value), or not any more (nil)
	if full {
		for id := range p.bound {
			want[id] = nil
		}
		s.Each(model.PortKind, func(o model.Object) bool {
			if x := o.(*model.Port); x.HostID == p.cfg.HostID && x.InterfaceName != "" {
				want[x.ID] = x
			}
			return true
		})
	} else {
		for _, ev := range s.Changes {
			if ev.Kind != model.PortKind {
				continue
			}
			if x, ok := ev.Object.(*model.Port); ok && x != nil && x.HostID == p.cfg.HostID && x.InterfaceName != "" {
				want[ev.ID] = x
			} else if p.bound[ev.ID] != nil {
				want[ev.ID] = nil
			}
		}
		// A changed QoS policy changes the limits of the ports under it.
		for _, ev := range s.Changes {
			if ev.Kind != model.QoSPolicyKind {
				continue
			}
			for id, b := range p.bound {
				if _, seen := want[id]; !seen && b.policy == ev.ID {
					if o, ok := s.Get(model.PortKind, id); ok {
						want[id] = o.(*model.Port)
					}
				}
			}
		}
	}
	changed := false
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		x, b := want[id], p.bound[id]
		if b != nil && (x == nil || x.InterfaceName != b.iface || x.TunnelKey != b.key) {
			if b.attached {
				p.detach(id, b, "port unbound")
				changed = true
			}
			delete(p.bound, id)
			b = nil
		}
		if x == nil {
			continue
		}
		if b == nil {
			b = &bound{index: p.index(x), iface: x.InterfaceName, key: x.TunnelKey}
			p.bound[id] = b
		}
		b.policy = x.QoSPolicyID
		q := datapath.PortQoS{}
		if o, ok := s.Get(model.QoSPolicyKind, x.QoSPolicyID); ok && x.QoSPolicyID != "" {
			q = limits(o.(*model.QoSPolicy))
		}
		if q != b.qos {
			b.qos = q
			if b.attached {
				p.setQoS(id, b)
			}
		}
		changed = p.attach(id, b) || changed
	}
	if changed {
		p.publish()
	}
	if full || s.ChangedSince(p.synced, model.TunnelZoneKind.Name, model.TunnelZoneMemberKind.Name) {
		p.syncTunnels(s, full)
	}
	p.synced = s.Version
}

// attach attaches b if it is not and its interface may exist; it reports
// whether it did. p.mu is held.
func (p *Ports) attach(id string, b *bound) bool {
	link, exists := p.links[b.iface]
	if b.attached || (p.listed && !exists) {
		return false // the interface may not exist yet (the VM is booting)
	}
	err := p.cfg.Datapath.AddPort(datapath.PortConfig{PortID: id, Index: b.index, Interface: b.iface,
		TunnelKey: b.key, MTU: p.cfg.UnderlayMTU})
	if err != nil {
		if !b.warned {
			p.cfg.Log.Warn("cannot attach bound port yet; retrying", "port", id, "interface", b.iface, "err", err)
			b.warned = true
		}
		return false
	}
	b.attached, b.ifindex, b.warned = true, link.Index, false
	p.cfg.Log.Info("port bound", "port", id, "interface", b.iface, "tunnel_key", b.key, "index", b.index)
	if b.qos != (datapath.PortQoS{}) {
		p.setQoS(id, b)
	}
	return true
}

// limits are a QoS policy's rate limits (none without a policy).
func limits(q *model.QoSPolicy) datapath.PortQoS {
	if q == nil {
		return datapath.PortQoS{}
	}
	return datapath.PortQoS{EgressKbps: q.EgressMaxKbps, EgressBurstKbit: q.EgressBurstKbit,
		IngressKbps: q.IngressMaxKbps, IngressBurstKbit: q.IngressBurstKbit}
}

// setQoS gives an attached port its limits. p.mu is held.
func (p *Ports) setQoS(id string, b *bound) {
	if err := p.cfg.Datapath.SetPortQoS(id, b.qos); err != nil {
		p.cfg.Log.Warn("cannot set the port's rate limits", "port", id, "err", err)
		return
	}
	p.cfg.Log.Info("port rate limits", "port", id, "egress_kbps", b.qos.EgressKbps, "ingress_kbps", b.qos.IngressKbps)
}

// detach removes an attached port from the datapath. p.mu is held.
func (p *Ports) detach(id string, b *bound, why string) {
	if err := p.cfg.Datapath.RemovePort(id); err != nil && !errors.Is(err, datapath.ErrUnknownPort) {
		p.cfg.Log.Warn("detach port", "port", id, "interface", b.iface, "err", err)
	}
	b.attached, b.ifindex = false, 0
	p.cfg.Log.Info(why, "port", id, "interface", b.iface)
}

// publish makes and announces the bindings. p.mu is held.
func (p *Ports) publish() {
	n := &Bindings{PortToDP: make(map[string]int32, len(p.bound)), DPToPort: make(map[int32]string, len(p.bound))}
	for id, b := range p.bound {
		if b.attached {
			n.PortToDP[id], n.DPToPort[b.index] = b.index, id
		}
	}
	p.cur = n
	if p.cfg.OnChange != nil {
		p.cfg.OnChange(n)
	}
}

// Run follows the links of the datapath's namespace until ctx is done.
func (p *Ports) Run(ctx context.Context) error {
	events := make(chan datapath.LinkEvent, 64)
	watchDone := make(chan struct{})
	go func() { // owned: Run waits for it below
		defer close(watchDone)
		_ = (backoff.Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second}).Retry(ctx, func(ctx context.Context) error {
			err := p.cfg.Links.WatchLinks(ctx, func(ev datapath.LinkEvent) {
				select {
				case events <- ev:
				case <-ctx.Done():
				}
			})
			if ctx.Err() != nil {
				return nil
			}
			return err
		}, func(attempt int, err error) {
			p.cfg.Log.Warn("link watch ended; subscribing again", "attempt", attempt, "err", err)
		})
	}()
	defer func() { <-watchDone }()
	p.resync(ctx)
	resync := time.NewTicker(p.cfg.Resync)
	defer resync.Stop()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev := <-events:
			p.linkChanged(ev)
		case <-resync.C:
			p.resync(ctx)
		case <-retry.C:
			p.retryPending()
		}
	}
}

// resync relists the links and reconciles every binding with them.
func (p *Ports) resync(ctx context.Context) {
	links, err := p.cfg.Links.Links(ctx)
	if err != nil {
		if ctx.Err() == nil {
			p.cfg.Log.Warn("cannot list interfaces", "err", err)
		}
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.links = make(map[string]datapath.Link, len(links))
	for _, l := range links {
		p.links[l.Name] = l
	}
	p.listed = true
	changed := false
	for id, b := range p.bound {
		changed = p.reconcile(id, b) || changed
	}
	if changed {
		p.publish()
	}
}

// linkChanged applies one link event.
func (p *Ports) linkChanged(ev datapath.LinkEvent) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.Deleted {
		// A deletion of an older incarnation, arriving after the new one
		// appeared, changes nothing.
		if cur, ok := p.links[ev.Name]; ok && cur.Index == ev.Index {
			delete(p.links, ev.Name)
		}
	} else {
		p.links[ev.Name] = ev.Link
	}
	changed := false
	for id, b := range p.bound {
		if b.iface == ev.Name {
			changed = p.reconcile(id, b) || changed
		}
	}
	if changed {
		p.publish()
	}
}

// reconcile attaches or detaches one binding to match the links; it
// reports whether it changed anything. p.mu is held.
func (p *Ports) reconcile(id string, b *bound) bool {
	link, exists := p.links[b.iface]
	switch {
	case b.attached && !exists:
		p.detach(id, b, "interface gone; port detached until it returns")
		return true
	case b.attached && b.ifindex != 0 && link.Index != b.ifindex:
		// Deleted and created again between two looks: the datapath
		// holds the old one.
		p.detach(id, b, "interface replaced; attaching the new one")
		p.attach(id, b)
		return true
	case b.attached && b.ifindex == 0:
		b.ifindex = link.Index // attached before the first listing
		return false
	case !b.attached:
		return p.attach(id, b)
	}
	return false
}

// retryPending retries the attaches that failed although the interface
// exists.
func (p *Ports) retryPending() {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := false
	for id, b := range p.bound {
		if !b.attached && b.warned {
			changed = p.attach(id, b) || changed
		}
	}
	if changed {
		p.publish()
	}
}
