package neutron_test

import (
	"slices"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/addressscopes"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/networkipavailabilities"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/subnetpools"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
)

// TestSubnetPools: address scopes, pools and subnets carved from them
// (a given CIDR, a prefix length, the pool's default length, the default
// pool), prefix operations, quotas, IP availability, and the input
// Neutron refuses.
func TestSubnetPools(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	scope, err := addressscopes.Create(ctx, c, addressscopes.CreateOpts{Name: "corp", IPVersion: 4}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := subnetpools.Create(ctx, c, subnetpools.CreateOpts{Name: "p", Prefixes: []string{"10.0.0.0/16", "10.1.0.0/16"},
		DefaultPrefixLen: 24, MinPrefixLen: 20, MaxPrefixLen: 28, AddressScopeID: scope.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(pool.Prefixes, []string{"10.0.0.0/15"}) || pool.IPversion != 4 || pool.MinPrefixLen != 20 {
		t.Errorf("pool: %+v, want its prefixes merged into 10.0.0.0/15", pool)
	}
	n, err := networks.Create(ctx, c, networks.CreateOpts{Name: "pooled"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	mk := func(opts subnets.CreateOpts) *subnets.Subnet {
		t.Helper()
		opts.NetworkID, opts.IPVersion, opts.SubnetPoolID = n.ID, 4, pool.ID
		s, err := subnets.Create(ctx, c, opts).Extract()
		if err != nil {
			t.Fatalf("subnet from the pool %+v: %v", opts, err)
		}
		return s
	}
	first := mk(subnets.CreateOpts{})
	if first.CIDR != "10.0.0.0/24" || first.GatewayIP != "10.0.0.1" || first.SubnetPoolID != pool.ID {
		t.Errorf("first subnet: %+v, want 10.0.0.0/24 (the pool's default length)", first)
	}
	given := mk(subnets.CreateOpts{CIDR: "10.0.9.0/24"})
	sized := mk(subnets.CreateOpts{Prefixlen: 22})
	if given.CIDR != "10.0.9.0/24" || sized.CIDR != "10.0.4.0/22" {
		t.Errorf("given %s, sized %s; want 10.0.9.0/24 and the first free /22, 10.0.4.0/22", given.CIDR, sized.CIDR)
	}
	st, doc := e.raw(c, "GET", "/v2.0/networks/"+n.ID, "")
	if st != 200 || doc["network"].(map[string]any)["ipv4_address_scope"] != scope.ID {
		t.Errorf("network's address scope: %d %v", st, doc)
	}

	// The default pool serves use_default_subnetpool.
	def, err := subnetpools.Create(ctx, c, subnetpools.CreateOpts{Name: "def", Prefixes: []string{"172.30.0.0/16"}, DefaultPrefixLen: 26, IsDefault: true}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	n2, err := networks.Create(ctx, c, networks.CreateOpts{Name: "default-pooled"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	st, doc = e.raw(c, "POST", "/v2.0/subnets", `{"subnet": {"network_id": "`+n2.ID+`", "ip_version": 4, "use_default_subnetpool": true}}`)
	if st != 201 || doc["subnet"].(map[string]any)["cidr"] != "172.30.0.0/26" || doc["subnet"].(map[string]any)["subnetpool_id"] != def.ID {
		t.Errorf("subnet from the default pool: %d %v", st, doc)
	}

	// Prefix operations.
	ps, err := subnetpools.AddPrefixes(ctx, c, def.ID, subnetpools.PrefixesOpsOpts{Prefixes: []string{"172.31.0.0/16"}}).Extract()
	if err != nil || !slices.Equal(ps, []string{"172.30.0.0/15"}) {
		t.Errorf("add prefixes: %v %v", ps, err)
	}
	ps, err = subnetpools.RemovePrefixes(ctx, c, def.ID, subnetpools.PrefixesOpsOpts{Prefixes: []string{"172.31.128.0/17"}}).Extract()
	if err != nil || !slices.Equal(ps, []string{"172.30.0.0/16", "172.31.0.0/17"}) {
		t.Errorf("remove prefixes: %v %v", ps, err)
	}

	// Quota: 300 addresses per project.
	q, err := subnetpools.Create(ctx, c, subnetpools.CreateOpts{Name: "quota", Prefixes: []string{"192.168.0.0/16"}, DefaultPrefixLen: 24, DefaultQuota: 300}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	n3, err := networks.Create(ctx, c, networks.CreateOpts{Name: "quota"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n3.ID, IPVersion: 4, SubnetPoolID: q.ID}).Extract(); err != nil {
		t.Fatal(err)
	}

	// IP availability: the pools' addresses and those in use.
	if _, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: n3.ID}).Extract(); err != nil {
		t.Fatal(err)
	}
	av, err := networkipavailabilities.Get(ctx, c, n3.ID).Extract()
	if err != nil || av.TotalIPs != "253" || av.UsedIPs != "1" || len(av.SubnetIPAvailabilities) != 1 {
		t.Errorf("availability: %+v %v, want 253 addresses, 1 used", av, err)
	}

	mkBody := func(pool, extra string) string {
		return `{"subnet": {"network_id": "` + n.ID + `", "ip_version": 4, "subnetpool_id": "` + pool + `"` + extra + `}}`
	}
	e.refused([]refusal{
		{"prefix length under the pool's minimum", "POST", "/v2.0/subnets", mkBody(pool.ID, `, "prefixlen": 16`), 400, "MinPrefixSubnetAllocationError", "minimum allowed prefix is 20"},
		{"prefix length over the pool's maximum", "POST", "/v2.0/subnets", mkBody(pool.ID, `, "prefixlen": 30`), 400, "MaxPrefixSubnetAllocationError", "maximum allowed prefix is 28"},
		{"CIDR outside the pool", "POST", "/v2.0/subnets", mkBody(pool.ID, `, "cidr": "10.5.0.0/24"`), 409, "SubnetAllocationError", "Cannot allocate requested subnet from the available set of prefixes"},
		{"CIDR taken in the pool", "POST", "/v2.0/subnets", mkBody(pool.ID, `, "cidr": "10.0.9.0/25"`), 409, "SubnetAllocationError", "Cannot allocate requested subnet"},
		{"over the pool's quota", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + n3.ID + `", "ip_version": 4, "subnetpool_id": "` + q.ID + `"}}`, 409, "SubnetPoolQuotaExceeded", "Per-project subnet pool prefix quota exceeded."},
		{"another pool on the network", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + n.ID + `", "ip_version": 4, "subnetpool_id": "` + q.ID + `"}}`, 400, "NetworkSubnetPoolAffinityError", "must be allocated from the same subnet pool"},
		{"mixed families", "POST", "/v2.0/subnetpools", `{"subnetpool": {"prefixes": ["10.9.0.0/16", "2001:db8::/48"]}}`, 400, "PrefixVersionMismatch", "Cannot mix IPv4 and IPv6 prefixes in a subnet pool."},
		{"default length under the minimum", "POST", "/v2.0/subnetpools", `{"subnetpool": {"prefixes": ["10.9.0.0/16"], "min_prefixlen": 24, "default_prefixlen": 20}}`, 400, "IllegalSubnetPoolPrefixBounds", "Illegal prefix bounds: default_prefixlen=20, min_prefixlen=24."},
		{"maximum over the family's", "POST", "/v2.0/subnetpools", `{"subnetpool": {"prefixes": ["10.9.0.0/16"], "max_prefixlen": 33}}`, 400, "IllegalSubnetPoolPrefixBounds", "max_prefixlen=33, ip_version_max=32"},
		{"no prefixes", "POST", "/v2.0/subnetpools", `{"subnetpool": {"name": "x"}}`, 400, "HTTPBadRequest", "Required attribute 'prefixes' not specified"},
		{"overlapping pools in one scope", "POST", "/v2.0/subnetpools", `{"subnetpool": {"prefixes": ["10.1.128.0/17"], "address_scope_id": "` + scope.ID + `"}}`, 409, "AddressScopePrefixConflict", "subnetpools within an address scope must have unique prefixes"},
		{"scope of another family", "POST", "/v2.0/subnetpools", `{"subnetpool": {"prefixes": ["2001:db8::/48"], "address_scope_id": "` + scope.ID + `"}}`, 400, "IllegalSubnetPoolIpVersionAssociationToAddressScope", "because subnetpool ip_version is not 4"},
		{"second default pool", "POST", "/v2.0/subnetpools", `{"subnetpool": {"prefixes": ["10.200.0.0/16"], "is_default": true}}`, 400, "InvalidInput", "A default subnetpool for this IP family has already been set"},
		{"shrinking the prefixes by update", "PUT", "/v2.0/subnetpools/" + pool.ID, `{"subnetpool": {"prefixes": ["10.0.0.0/16"]}}`, 400, "IllegalSubnetPoolPrefixUpdate", "Existing prefixes must be a subset of the new prefixes"},
		{"removing a prefix in use", "PUT", "/v2.0/subnetpools/" + pool.ID + "/remove_prefixes", `{"prefixes": ["10.0.0.0/20"]}`, 400, "IllegalSubnetPoolPrefixUpdate", "One or more the prefixes to be removed is in use by a subnet"},
		{"pool in use", "DELETE", "/v2.0/subnetpools/" + pool.ID, "", 400, "SubnetPoolDeleteError", "Subnet pool has existing allocations"},
		{"scope in use", "DELETE", "/v2.0/address-scopes/" + scope.ID, "", 409, "AddressScopeInUse", "There are one or more subnet pools in use on the address scope"},
		{"bad scope version", "POST", "/v2.0/address-scopes", `{"address_scope": {"ip_version": 5}}`, 400, "HTTPBadRequest", "'5' is not in [4, 6]"},
	})
}
