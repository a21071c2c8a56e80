package lbhealth

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/model"
)

// plan: the responsible agent checks the members of monitored pools,
// writes no_monitor for the others, and spots duplicate health-check
// ports; another agent does nothing for that router.
func TestHealthPlan(t *testing.T) {
	const (
		rid  = "00000000-0000-4000-8000-000000000001"
		lbID = "00000000-0000-4000-8000-000000000002"
		hmID = "00000000-0000-4000-8000-000000000003"
	)
	mon := &model.HealthMonitor{Meta: model.Meta{ID: hmID}, Type: "http", Delay: 2, Timeout: 1, MaxRetries: 3,
		MaxRetriesDown: 2, URLPath: "/h", ExpectedCodes: "200-204", State: model.StateUp}
	objs := []model.Object{
		&model.Router{Meta: model.Meta{ID: rid}, LoadBalancerID: lbID},
		&model.LoadBalancer{Meta: model.Meta{ID: lbID}},
		mon,
		&model.Pool{Meta: model.Meta{ID: "pool-checked"}, LoadBalancerID: lbID, HealthMonitorID: hmID},
		&model.Pool{Meta: model.Meta{ID: "pool-plain"}, LoadBalancerID: lbID},
		&model.PoolMember{Meta: model.Meta{ID: "m1"}, PoolID: "pool-checked", Address: netip.MustParseAddr("10.0.0.1"), ProtocolPort: 80},
		&model.PoolMember{Meta: model.Meta{ID: "m6"}, PoolID: "pool-checked", Address: netip.MustParseAddr("fd00::1"), ProtocolPort: 80},
		&model.PoolMember{Meta: model.Meta{ID: "m2"}, PoolID: "pool-plain", Address: netip.MustParseAddr("10.0.0.2"), ProtocolPort: 53},
		&model.Port{Meta: model.Meta{ID: "p-b"}, RouterID: rid, Address: hostclaim.HealthPortAddr, Network: hostclaim.HealthCheckNet},
		&model.Port{Meta: model.Meta{ID: "p-a"}, RouterID: rid, Address: hostclaim.HealthPortAddr, Network: hostclaim.HealthCheckNet},
		&model.Route{Meta: model.Meta{ID: "rt"}, RouterID: rid, Dst: hostclaim.HealthCheckNet, PortID: "p-a"},
	}
	hosts := []string{"host-1", "host-2", "host-3"}
	owner := hostclaim.Rendezvous(rid, hosts)
	for _, host := range hosts {
		h := &Health{cfg: Config{HostID: host, Log: quiet}}
		alive := map[string]bool{}
		for _, x := range hosts {
			alive[x] = true
		}
		p := h.plan(objList(objs), alive)
		if host != owner {
			if len(p.targets) != 0 || len(p.status) != 0 || p.owned[rid] {
				t.Errorf("%s is not responsible but plans %v %v", host, p.targets, p.status)
			}
			continue
		}
		ts := p.targets[rid]
		if len(ts) != 1 || ts[0].ID != "m1" || ts[0].Addr != netip.MustParseAddrPort("10.0.0.1:80") {
			t.Fatalf("targets %+v, want m1 at 10.0.0.1:80", ts)
		}
		m := ts[0].Monitor
		if m.Type != "http" || m.Delay != 2*time.Second || m.Timeout != time.Second || m.MaxRetries != 3 ||
			m.MaxRetriesDown != 2 || m.URLPath != "/h" || !m.Codes.Match(204) || m.Codes.Match(205) {
			t.Errorf("monitor %+v", m)
		}
		if p.status["m2"] != model.MemberNoMonitor || len(p.status) != 1 {
			t.Errorf("statuses %v, want m2 no_monitor only", p.status)
		}
		if p.ports[rid] == nil || p.ports[rid].ID != "p-a" || len(p.extra) != 1 || p.extra[0].ID != "p-b" {
			t.Errorf("health-check port %v, extra %v: want p-a kept, p-b extra", p.ports[rid], p.extra)
		}
		if !p.routes["p-a"] {
			t.Errorf("route of p-a not found")
		}
	}
	// A monitor set down is no monitor.
	mon.State = model.StateDown
	h := &Health{cfg: Config{HostID: owner, Log: quiet}}
	p := h.plan(objList(objs), map[string]bool{"host-1": true, "host-2": true, "host-3": true})
	if len(p.targets) != 0 || p.status["m1"] != model.MemberNoMonitor {
		t.Errorf("monitor down: targets %v, statuses %v", p.targets, p.status)
	}
}

// objList is a plan's objects as a slice.
type objList []model.Object

func (l objList) Each(k *model.Kind, fn func(model.Object) bool) {
	for _, o := range l {
		if model.KindOf(o) == k && !fn(o) {
			return
		}
	}
}
