package join

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/nagare/nagare/pkg/hostclaim"
)

// Claims is the joined agent's hostclaim.Claims: the server's host-claim
// routes, authenticated by the identity's certificate. The host is the
// certificate's; a claim for another host id is refused here.
func (id *Identity) Claims() hostclaim.Claims { return claimsClient{id} }

type claimsClient struct{ id *Identity }

func (c claimsClient) check(hostID string) error {
	if hostID != c.id.HostID {
		return fmt.Errorf("this agent's certificate is host %s's, not %s's", c.id.HostID, hostID)
	}
	return nil
}

func (c claimsClient) SetHost(ctx context.Context, hostID string, h hostclaim.HostInfo) error {
	if err := c.check(hostID); err != nil {
		return err
	}
	return claimErr(post(ctx, c.id.client(), c.id.url("/api/v1/host-claims/host"), h, nil))
}

func (c claimsClient) ClaimUplink(ctx context.Context, hostID string, u hostclaim.Uplink) error {
	if err := c.check(hostID); err != nil {
		return err
	}
	return claimErr(post(ctx, c.id.client(), c.id.url("/api/v1/host-claims/uplink"), u, nil))
}

func (c claimsClient) EnsureHealthPort(ctx context.Context, hostID, routerID string) (string, error) {
	if err := c.check(hostID); err != nil {
		return "", err
	}
	var out HealthPort
	err := post(ctx, c.id.client(), c.id.url("/api/v1/host-claims/health-port"), HealthPortRequest{RouterID: routerID}, &out)
	return out.PortID, claimErr(err)
}

func (c claimsClient) RemoveHealthPort(ctx context.Context, hostID, portID string) error {
	if err := c.check(hostID); err != nil {
		return err
	}
	return claimErr(send(ctx, c.id.client(), http.MethodDelete, c.id.url("/api/v1/host-claims/health-port/"+url.PathEscape(portID)), nil, nil))
}

// claimErr gives the server's refusals back their class, so the agent
// treats a refusal over HTTP as it treats one from the NSDB.
func claimErr(err error) error {
	var se *StatusError
	if !errors.As(err, &se) {
		return err
	}
	for class, st := range claimStatuses {
		if st == se.Status {
			return &hostclaim.Error{Class: class, Message: se.Message}
		}
	}
	return err
}
