package server_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	joinapi "github.com/nagare/nagare/pkg/api/join"
	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// aliveAs marks a joined host alive through its own etcd connection, as
// its agent does.
func aliveAs(t *testing.T, ctx context.Context, cli *clientv3.Client, hostID string) {
	t.Helper()
	st := nsdb.New(cli)
	lease, err := st.GrantLease(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SetHostAlive(ctx, hostID, lease); err != nil {
		t.Fatal(err)
	}
}

// TestHostClaimsAPI: a joined agent, which may not write the topology in
// etcd, has the server make its claims: its own addresses, an uplink of a
// network it maps, the health-check port of a router it checks. The
// certificate decides the host; a claim the rules refuse is 403 and
// writes nothing; no certificate is 401, a revoked host 403.
func TestHostClaimsAPI(t *testing.T) {
	srv := startSecure(t)
	ctx := context.Background()
	tok, err := srv.Join().CreateToken(ctx, time.Hour, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	a, err := joinapi.Join(ctx, joinapi.JoinOptions{Server: srv.URL(), Token: tok.String(), Name: "gw-a", Dir: t.TempDir(), PhysicalNetworks: []string{"physnet1"}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := joinAs(t, srv, "hv-b", tok.String())
	if err != nil {
		t.Fatal(err)
	}
	ea, eb := etcdAs(t, srv, a.TLSConfig()), etcdAs(t, srv, b.TLSConfig())
	aliveAs(t, ctx, ea, a.HostID)
	aliveAs(t, ctx, eb, b.HostID)
	root := srv.Store()
	br, err := root.Create(ctx, &model.Bridge{Name: "ext"})
	if err != nil {
		t.Fatal(err)
	}
	up, err := root.Create(ctx, &model.Port{BridgeID: br.GetMeta().ID, PhysicalNetwork: "physnet1"})
	if err != nil {
		t.Fatal(err)
	}
	lb, err := root.Create(ctx, &model.LoadBalancer{Name: "lb"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := root.Create(ctx, &model.Router{Name: "r", LoadBalancerID: lb.GetMeta().ID})
	if err != nil {
		t.Fatal(err)
	}
	checker, other := a, b
	hosts := []string{a.HostID, b.HostID}
	if hosts[0] > hosts[1] {
		hosts[0], hosts[1] = hosts[1], hosts[0]
	}
	if hostclaim.Rendezvous(r.GetMeta().ID, hosts) == b.HostID {
		checker, other = b, a
	}

	// What the rules refuse: nothing is written.
	before := revision(t, srv)
	uplink := hostclaim.Uplink{PortID: up.GetMeta().ID, PhysicalNetwork: "physnet1", Interface: "eth1"}
	for _, c := range []struct {
		what   string
		status int
		do     func() error
	}{
		{"b, which does not map physnet1, claims the uplink", 403, func() error { return b.Claims().ClaimUplink(ctx, b.HostID, uplink) }},
		{"the host that does not check the router asks for its port", 403, func() error {
			_, err := other.Claims().EnsureHealthPort(ctx, other.HostID, r.GetMeta().ID)
			return err
		}},
		{"a bad physical network", 400, func() error {
			return a.Claims().SetHost(ctx, a.HostID, hostclaim.HostInfo{PhysicalNetworks: []string{"a b"}})
		}},
		{"an unknown router", 404, func() error {
			_, err := a.Claims().EnsureHealthPort(ctx, a.HostID, "00000000-0000-4000-8000-000000000009")
			return err
		}},
	} {
		if err := c.do(); !hasStatus(err, c.status) {
			t.Errorf("%s: %v, want %d", c.what, err, c.status)
		}
	}
	if err := a.Claims().SetHost(ctx, b.HostID, hostclaim.HostInfo{}); err == nil {
		t.Error("a's client claims for b")
	}
	for _, path := range []string{"/api/v1/host-claims/host", "/api/v1/host-claims/uplink", "/api/v1/host-claims/health-port"} {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool(t, srv)}}}
		resp, err := hc.Post(srv.URL()+path, "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a certificate: %d, want 401", path, resp.StatusCode)
		}
	}
	if after := revision(t, srv); after != before {
		t.Fatalf("etcd revision %d → %d after refused claims", before, after)
	}

	// What they allow.
	addr := []netip.Addr{netip.MustParseAddr("192.0.2.77")}
	if err := a.Claims().SetHost(ctx, a.HostID, hostclaim.HostInfo{Addresses: addr}); err != nil {
		t.Fatal(err)
	}
	if err := a.Claims().ClaimUplink(ctx, a.HostID, uplink); err != nil {
		t.Fatal(err)
	}
	port, err := checker.Claims().EnsureHealthPort(ctx, checker.HostID, r.GetMeta().ID)
	if err != nil {
		t.Fatal(err)
	}
	if h, err := root.Get(ctx, model.HostKind, a.HostID); err != nil || len(h.(*model.Host).Addresses) != 1 || h.(*model.Host).Addresses[0] != addr[0] {
		t.Errorf("a's addresses: %+v %v", h, err)
	}
	if p, err := root.Get(ctx, model.PortKind, up.GetMeta().ID); err != nil || p.(*model.Port).HostID != a.HostID {
		t.Errorf("uplink after a's claim: %+v %v", p, err)
	}
	if p, err := root.Get(ctx, model.PortKind, port); err != nil || p.(*model.Port).HostID != checker.HostID {
		t.Errorf("health-check port: %+v %v", p, err)
	}
	// The same changes straight into etcd are refused.
	if _, err := ea.Put(ctx, "/nagare/v1/obj/port/"+up.GetMeta().ID, "{}"); !nsdb.IsPermissionDenied(err) {
		t.Errorf("a writes the uplink in etcd: %v, want permission denied", err)
	}
	if err := srv.Join().Revoke(ctx, "gw-a"); err != nil {
		t.Fatal(err)
	}
	before = revision(t, srv)
	if err := a.Claims().SetHost(ctx, a.HostID, hostclaim.HostInfo{Addresses: []netip.Addr{}}); !hasStatus(err, 403) {
		t.Errorf("revoked host claims: %v, want 403", err)
	}
	if after := revision(t, srv); after != before {
		t.Errorf("etcd revision %d → %d after a revoked host's claim", before, after)
	}
}

func hasStatus(err error, status int) bool {
	var se *joinapi.StatusError
	if errors.As(err, &se) {
		return se.Status == status
	}
	var ce *hostclaim.Error
	if !errors.As(err, &ce) {
		return false
	}
	return map[hostclaim.Class]int{hostclaim.BadRequest: 400, hostclaim.Forbidden: 403, hostclaim.NotFound: 404, hostclaim.Conflict: 409}[ce.Class] == status
}
