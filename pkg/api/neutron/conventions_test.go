package neutron_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/gophercloud/gophercloud/v2/pagination"
)

// TestConventions checks Neutron's collection and write conventions:
// version discovery, filters, fields, sorting, pagination with links,
// tag filters, revision_number with If-Match, and the error body.
func TestConventions(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin

	// Version discovery is open; /v2.0 needs a token.
	st, doc := e.raw(nil, "GET", "/", "")
	if st != 200 || fmt.Sprint(doc["versions"]) == "" || !strings.Contains(fmt.Sprint(doc), "v2.0") || !strings.Contains(fmt.Sprint(doc), "CURRENT") {
		t.Errorf("GET /: %d %v", st, doc)
	}
	if st, _ := e.raw(nil, "GET", "/v2.0", ""); st != 401 {
		t.Errorf("GET /v2.0 without a token: %d, want 401", st)
	}
	st, doc = e.raw(c, "GET", "/v2.0", "")
	if st != 200 || !strings.Contains(fmt.Sprint(doc["resources"]), "security_groups") {
		t.Errorf("GET /v2.0: %d %v", st, doc)
	}

	var ids []string
	for i := range 7 {
		n, err := networks.Create(ctx, c, networks.CreateOpts{Name: fmt.Sprintf("net-%d", i%3), Description: fmt.Sprint(i), AdminStateUp: ptr(i%2 == 0)}).Extract()
		must(t, err)
		ids = append(ids, n.ID)
	}
	list := func(q string) []networks.Network {
		t.Helper()
		st, doc := e.raw(c, "GET", "/v2.0/networks?"+q, "")
		if st != 200 {
			t.Fatalf("list ?%s: %d %v", q, st, doc)
		}
		var out []networks.Network
		for _, x := range doc["networks"].([]any) {
			m := x.(map[string]any)
			out = append(out, networks.Network{ID: fmt.Sprint(m["id"]), Name: fmt.Sprint(m["name"]), Description: fmt.Sprint(m["description"])})
		}
		return out
	}
	// Filters: equality, OR within a field, AND across fields, booleans.
	if got := list("name=net-1"); len(got) != 2 {
		t.Errorf("name=net-1: %d networks, want 2", len(got))
	}
	if got := list("name=net-1&name=net-2"); len(got) != 4 {
		t.Errorf("name=net-1&name=net-2: %d networks, want 4", len(got))
	}
	if got := list("name=net-0&admin_state_up=false"); len(got) != 1 || got[0].Description != "3" {
		t.Errorf("name=net-0&admin_state_up=false: %v", got)
	}
	st, doc = e.raw(c, "GET", "/v2.0/networks?colour=blue", "")
	if st != 400 || !strings.Contains(fmt.Sprint(doc), "['colour'] is invalid attribute for filtering") {
		t.Errorf("unknown filter: %d %v", st, doc)
	}
	// Fields.
	st, doc = e.raw(c, "GET", "/v2.0/networks?fields=id&fields=name", "")
	if m := doc["networks"].([]any)[0].(map[string]any); st != 200 || len(m) != 2 || m["id"] == nil || m["name"] == nil {
		t.Errorf("fields=id&fields=name: %v", m)
	}
	st, doc = e.raw(c, "GET", "/v2.0/networks/"+ids[0]+"?fields=mtu", "")
	if m := doc["network"].(map[string]any); st != 200 || len(m) != 1 || m["mtu"] != 1450.0 {
		t.Errorf("show with fields=mtu: %v", m)
	}
	// Sorting.
	got := list("sort_key=name&sort_dir=desc&sort_key=description&sort_dir=asc")
	var names []string
	for _, n := range got {
		names = append(names, n.Name+"/"+n.Description)
	}
	if strings.Join(names, " ") != "net-2/2 net-2/5 net-1/1 net-1/4 net-0/0 net-0/3 net-0/6" {
		t.Errorf("sorted: %v", names)
	}
	if st, _ := e.raw(c, "GET", "/v2.0/networks?sort_key=colour&sort_dir=asc", ""); st != 400 {
		t.Errorf("sort by unknown key: %d, want 400", st)
	}
	// Pagination, followed by gophercloud through the next links.
	var pages, seen int
	err := networks.List(c, networks.ListOpts{Limit: 3}).EachPage(ctx, func(_ context.Context, p pagination.Page) (bool, error) {
		ns, err := networks.ExtractNetworks(p)
		pages++
		seen += len(ns)
		return true, err
	})
	if err != nil || seen != 7 || pages < 3 {
		t.Errorf("paginated with limit 3: %d networks in %d pages (%v)", seen, pages, err)
	}
	st, doc = e.raw(c, "GET", "/v2.0/networks?limit=3", "")
	links := fmt.Sprint(doc["networks_links"])
	if st != 200 || len(doc["networks"].([]any)) != 3 || !strings.Contains(links, "next") || !strings.Contains(links, "previous") {
		t.Errorf("first page: %v", doc)
	}
	// The previous page of the second page is the first one.
	first := doc["networks"].([]any)
	var next string
	for _, l := range doc["networks_links"].([]any) {
		if m := l.(map[string]any); m["rel"] == "next" {
			next = m["href"].(string)
		}
	}
	u, _ := url.Parse(next)
	st, doc = e.raw(c, "GET", u.RequestURI(), "")
	second := doc["networks"].([]any)
	if st != 200 || len(second) != 3 || second[0].(map[string]any)["id"] == first[0].(map[string]any)["id"] {
		t.Errorf("second page: %v", doc)
	}
	marker := second[0].(map[string]any)["id"].(string)
	st, doc = e.raw(c, "GET", "/v2.0/networks?limit=3&marker="+marker+"&page_reverse=True", "")
	if back := doc["networks"].([]any); st != 200 || len(back) != 3 || back[0].(map[string]any)["id"] != first[0].(map[string]any)["id"] {
		t.Errorf("page_reverse from the second page: %v", doc)
	}
	if st, doc := e.raw(c, "GET", "/v2.0/networks?limit=3&marker=0b5d2a5e-0000-4000-8000-000000000000", ""); st != 404 {
		t.Errorf("unknown marker: %d %v", st, doc)
	}
	if st, _ := e.raw(c, "GET", "/v2.0/networks?limit=-1", ""); st != 400 {
		t.Errorf("limit=-1: %d, want 400", st)
	}

	// Tag filters.
	for i, tags := range [][]string{{"a", "b"}, {"a"}, {"c"}} {
		if st, _ := e.raw(c, "PUT", "/v2.0/networks/"+ids[i]+"/tags", fmt.Sprintf(`{"tags": [%q%s]}`, tags[0], map[bool]string{true: fmt.Sprintf(", %q", tags[len(tags)-1]), false: ""}[len(tags) > 1])); st != 200 {
			t.Fatalf("set tags: %d", st)
		}
	}
	for q, want := range map[string]int{"tags=a": 2, "tags=a,b": 1, "tags-any=b,c": 2, "not-tags=a": 5, "not-tags-any=a,c": 4} {
		if got := list(q); len(got) != want {
			t.Errorf("%s: %d networks, want %d", q, len(got), want)
		}
	}

	// revision_number and If-Match.
	n0, _ := networks.Get(ctx, c, ids[0]).Extract()
	_, err = networks.Update(ctx, c, ids[0], networks.UpdateOpts{Name: ptr("x"), RevisionNumber: ptr(n0.RevisionNumber + 5)}).Extract()
	wantError(t, "stale If-Match", err, 412, "RevisionNumberConstraintFailed", fmt.Sprintf("but current revision is %d", n0.RevisionNumber))
	n1, err := networks.Update(ctx, c, ids[0], networks.UpdateOpts{Name: ptr("x"), RevisionNumber: ptr(n0.RevisionNumber)}).Extract()
	if err != nil || n1.RevisionNumber != n0.RevisionNumber+1 || !n1.UpdatedAt.After(n0.CreatedAt.Add(-1)) {
		t.Errorf("matching If-Match: %+v %v", n1, err)
	}
	st, _ = e.raw(c, "DELETE", "/v2.0/networks/"+ids[0], "", "If-Match", fmt.Sprintf("revision_number=%d", n0.RevisionNumber))
	if st != 412 {
		t.Errorf("delete with a stale If-Match: %d, want 412", st)
	}

	// The error body.
	_, err = networks.Get(ctx, c, "0b5d2a5e-0000-4000-8000-000000000000").Extract()
	wantError(t, "missing network", err, 404, "NetworkNotFound", "Network 0b5d2a5e-0000-4000-8000-000000000000 could not be found.")
	st, doc = e.raw(c, "POST", "/v2.0/networks", `{"network": {"name": "n", "colour": "blue"}}`)
	if ne, _ := doc["NeutronError"].(map[string]any); st != 400 || ne["type"] != "HTTPBadRequest" || ne["message"] != "Unrecognized attribute(s) 'colour'" || ne["detail"] != "" {
		t.Errorf("unknown attribute: %d %v", st, doc)
	}

	// Filters answered from the index (network_id) and by value (fixed_ips).
	sub, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: ids[1], IPVersion: 4, CIDR: "10.5.0.0/24"}).Extract()
	must(t, err)
	var pids []string
	for i := range 3 {
		p, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: ids[1], FixedIPs: []ports.IP{{SubnetID: sub.ID, IPAddress: fmt.Sprintf("10.5.0.%d", 10+i)}}}).Extract()
		must(t, err)
		pids = append(pids, p.ID)
	}
	pp, _ := ports.List(c, ports.ListOpts{NetworkID: ids[1]}).AllPages(ctx)
	if all, _ := ports.ExtractPorts(pp); len(all) != 3 {
		t.Errorf("ports on network: %d", len(all))
	}
	pp, _ = ports.List(c, ports.ListOpts{FixedIPs: []ports.FixedIPOpts{{IPAddress: "10.5.0.11"}}}).AllPages(ctx)
	if all, _ := ports.ExtractPorts(pp); len(all) != 1 || all[0].ID != pids[1] {
		t.Errorf("fixed_ips=ip_address=10.5.0.11: %v", all)
	}
	if !slices.Contains(pids, pids[0]) {
		t.Fatal("unreachable")
	}
	if st, _ := e.raw(c, "GET", "/v2.0/networks.json", ""); st != http.StatusOK {
		t.Errorf(".json suffix: %d", st)
	}
}
