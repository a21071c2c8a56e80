package nsdb

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
)

// fixture is a store on a fresh embedded etcd, with helpers that build
// topology and fail the test on unexpected errors.
type fixture struct {
	t   testing.TB
	ctx context.Context
	cli *clientv3.Client
	s   *Store
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	cli := nsdbtest.Start(t)
	s := New(cli)
	if err := s.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ctx: context.Background(), cli: cli, s: s}
}

func (f *fixture) create(o model.Object) model.Object {
	f.t.Helper()
	c, err := f.s.Create(f.ctx, o)
	if err != nil {
		f.t.Fatalf("create %s: %v", model.KindOf(o).Name, err)
	}
	return c
}

func (f *fixture) bridge(name string) *model.Bridge {
	return f.create(&model.Bridge{Name: name}).(*model.Bridge)
}

func (f *fixture) router(name string) *model.Router {
	return f.create(&model.Router{Name: name}).(*model.Router)
}

func (f *fixture) bridgePort(bridgeID string) *model.Port {
	return f.create(&model.Port{BridgeID: bridgeID}).(*model.Port)
}

func (f *fixture) routerPort(routerID, cidr string) *model.Port {
	p := netip.MustParsePrefix(cidr)
	return f.create(&model.Port{RouterID: routerID, Address: p.Addr(), Network: p}).(*model.Port)
}

func (f *fixture) host(name string) *model.Host {
	return f.create(&model.Host{Name: name}).(*model.Host)
}

func (f *fixture) chain(name string) *model.Chain {
	return f.create(&model.Chain{Name: name}).(*model.Chain)
}

func (f *fixture) rule(chainID string, pos int) *model.Rule {
	return f.create(&model.Rule{ChainID: chainID, Type: model.RuleAccept, Position: pos}).(*model.Rule)
}

func (f *fixture) get(k *model.Kind, id string) model.Object {
	f.t.Helper()
	o, err := f.s.Get(f.ctx, k, id)
	if err != nil {
		f.t.Fatalf("get %s %s: %v", k.Name, id, err)
	}
	return o
}

func (f *fixture) modify(k *model.Kind, id string, mutate func(model.Object)) model.Object {
	f.t.Helper()
	o, err := f.s.Modify(f.ctx, k, id, 0, func(o model.Object) error { mutate(o); return nil })
	if err != nil {
		f.t.Fatalf("modify %s %s: %v", k.Name, id, err)
	}
	return o
}

func (f *fixture) gone(k *model.Kind, id string) {
	f.t.Helper()
	if _, err := f.s.Get(f.ctx, k, id); !errors.Is(err, model.ErrNotFound) {
		f.t.Errorf("%s %s: got %v, want it deleted", k.Name, id, err)
	}
}

// snapshot is every key and value under /nagare with the store revision:
// "nothing was written" means the snapshot is unchanged.
func (f *fixture) snapshot() (map[string]string, int64) {
	f.t.Helper()
	r, err := f.cli.Get(f.ctx, "/nagare/", clientv3.WithPrefix())
	if err != nil {
		f.t.Fatal(err)
	}
	m := map[string]string{}
	for _, kv := range r.Kvs {
		m[string(kv.Key)] = string(kv.Value)
	}
	return m, r.Header.Revision
}

func (f *fixture) unchangedBy(what string, fn func()) {
	f.t.Helper()
	before, rev := f.snapshot()
	fn()
	after, rev2 := f.snapshot()
	if len(before) != len(after) || rev != rev2 {
		f.t.Errorf("%s changed the NSDB: %d keys at revision %d, then %d keys at revision %d", what, len(before), rev, len(after), rev2)
	}
}

// keysUnder counts the keys under a prefix.
func (f *fixture) keysUnder(prefix string) int {
	f.t.Helper()
	r, err := f.cli.Get(f.ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		f.t.Fatal(err)
	}
	return int(r.Count)
}

func wantFieldError(t testing.TB, err error, field, contains string) {
	t.Helper()
	var fe *model.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("got %v (%T), want a FieldError on %s", err, err, field)
	}
	if fe.Field != field || !strings.Contains(fe.Msg, contains) {
		t.Fatalf("got FieldError %q, want field %s with %q", fe.Error(), field, contains)
	}
}

func wantConflict(t testing.TB, err error, contains string) {
	t.Helper()
	if !errors.Is(err, model.ErrConflict) {
		t.Fatalf("got %v (%T), want a conflict", err, err)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("conflict %q does not say %q", err, contains)
	}
}

func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }
func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
