package harness

import (
	"context"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
)

// Neutron logs user in to project (domain Default) with password through
// the environment's identity API, as an OpenStack client does, and returns
// the provider and its networking client.
func (e *Env) Neutron(ctx context.Context, t testing.TB, user, password, project string) (*gophercloud.ProviderClient, *gophercloud.ServiceClient) {
	t.Helper()
	prov, err := openstack.AuthenticatedClient(ctx, gophercloud.AuthOptions{IdentityEndpoint: e.IdentityURL(),
		Username: user, Password: password, DomainName: "Default", TenantName: project})
	if err != nil {
		t.Fatalf("log in as %s to project %s: %v", user, project, err)
	}
	nc, err := openstack.NewNetworkV2(prov, gophercloud.EndpointOpts{})
	if err != nil {
		t.Fatalf("networking client of %s: %v", user, err)
	}
	return prov, nc
}
