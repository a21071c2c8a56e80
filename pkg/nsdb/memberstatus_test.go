package nsdb

import (
	"errors"
	"testing"

	"github.com/nagare/nagare/pkg/model"
)

func (f *fixture) member(addr string) *model.PoolMember {
	lb := f.create(&model.LoadBalancer{Name: "lb"}).(*model.LoadBalancer)
	pool := f.create(&model.Pool{LoadBalancerID: lb.ID}).(*model.Pool)
	return f.create(&model.PoolMember{PoolID: pool.ID, Address: mustAddr(addr), ProtocolPort: 80}).(*model.PoolMember)
}

func TestMemberStatus(t *testing.T) {
	f := newFixture(t)
	m1, m2 := f.member("10.0.0.1"), f.member("10.0.0.2")
	lease, err := f.cli.Grant(f.ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, host, id, status string
		ok                     func(error) bool
	}{
		{"not a UUID", "h1", "nope", model.MemberUp, func(err error) bool { return errors.Is(err, model.ErrNotFound) }},
		{"no such member", "h1", "00000000-0000-4000-8000-000000000009", model.MemberUp, func(err error) bool { return errors.Is(err, model.ErrNotFound) }},
		{"no host", "", m1.ID, model.MemberUp, func(err error) bool { return errors.Is(err, model.ErrNotFound) }},
		{"a host id that is a path", "../h", m1.ID, model.MemberUp, func(err error) bool { return errors.Is(err, model.ErrNotFound) }},
		{"bad status", "h1", m1.ID, "sick", func(err error) bool {
			var fe *model.FieldError
			return errors.As(err, &fe) && fe.Field == "status"
		}},
	} {
		f.unchangedBy(c.name, func() {
			if err := f.s.PutMemberStatus(f.ctx, c.host, c.id, c.status, lease.ID); !c.ok(err) {
				t.Errorf("%s: PutMemberStatus = %v", c.name, err)
			}
		})
	}
	if err := f.s.PutMemberStatus(f.ctx, "h1", m1.ID, model.MemberDown, lease.ID); err != nil {
		t.Fatal(err)
	}
	if st, err := f.s.MemberStatus(f.ctx, m1.ID); err != nil || st != model.MemberDown {
		t.Fatalf("MemberStatus(m1) = %q, %v", st, err)
	}
	if st, err := f.s.MemberStatus(f.ctx, m2.ID); err != nil || st != "" {
		t.Fatalf("MemberStatus(m2), never written = %q, %v", st, err)
	}
	all, err := f.s.MemberStatuses(f.ctx)
	if err != nil || len(all) != 1 || all[m1.ID] != model.MemberDown {
		t.Fatalf("MemberStatuses = %v, %v", all, err)
	}

	w := startWatch(t, f.s.WatchMemberStatus)
	if b := w.next(); !b.Reset || len(b.Status) != 1 || b.Status[m1.ID] != model.MemberDown {
		t.Fatalf("first batch %+v, want a Reset with m1 down", b)
	}
	if err := f.s.PutMemberStatus(f.ctx, "h1", m1.ID, model.MemberUp, lease.ID); err != nil {
		t.Fatal(err)
	}
	if b := w.next(); b.Reset || len(b.Status) != 1 || b.Status[m1.ID] != model.MemberUp {
		t.Fatalf("m1 up: %+v", b)
	}
	if err := f.s.PutMemberStatus(f.ctx, "h2", m2.ID, model.MemberNoMonitor, 0); err != nil {
		t.Fatal(err)
	}
	if b := w.next(); b.Status[m2.ID] != model.MemberNoMonitor {
		t.Fatalf("m2 no_monitor: %+v", b)
	}
	// The monitor's agent dies: its lease takes m1's status with it.
	if _, err := f.cli.Revoke(f.ctx, lease.ID); err != nil {
		t.Fatal(err)
	}
	if b := w.next(); len(b.Status) != 1 {
		t.Fatalf("lease revoked: %+v, want one change", b)
	} else if v, ok := b.Status[m1.ID]; !ok || v != "" {
		t.Fatalf("lease revoked: %+v, want m1 reported \"\"", b)
	}
	if err := f.s.TakeBackMemberStatus(f.ctx, "h2", m2.ID); err != nil {
		t.Fatal(err)
	}
	if b := w.next(); b.Status[m2.ID] != "" {
		t.Fatalf("m2 taken back: %+v", b)
	}
	// The status is never stored with the member itself.
	if got := f.get(model.PoolMemberKind, m1.ID).(*model.PoolMember); got.Status != "" {
		t.Fatalf("member read from the store has status %q", got.Status)
	}
}
