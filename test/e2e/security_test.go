//go:build linux

package e2e

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"

	joinapi "github.com/nagare/nagare/pkg/api/join"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/test/e2e/harness"
)

// TestSecure runs Nagare as in production (README, "Security"): the
// server with TLS (HTTPS API, etcd with client certificates and RBAC),
// agents that joined with a token and hold host certificates, the CLIs
// and gophercloud verifying the server with its CA. VMs on two hosts
// talk (ping, TCP); revoking a host refuses it at once: its agent stops,
// its certificate writes nothing, its peers stop sending to it.
func TestSecure(t *testing.T) {
	t.Parallel()
	const password = "e2e-Secure-adm1n"
	tp := newTopologyWith(t, harness.Options{Secure: true, AdminPassword: password})
	env := tp.Env
	if !strings.HasPrefix(env.API, "https://") || env.CAFile == "" {
		t.Fatalf("API %s, CA %q: want HTTPS and a CA", env.API, env.CAFile)
	}
	hv1, hv2 := env.Host("hv1"), env.Host("hv2")
	for _, h := range []*harness.Hypervisor{hv1, hv2} {
		if log := h.AgentLog(); !strings.Contains(log, "joined") {
			t.Fatalf("agent %s did not join:\n%s", h.Name, log)
		}
	}

	t.Run("Traffic", func(t *testing.T) {
		tp.vm["vm11"].WaitPing(t, "10.0.1.12", 10*time.Second)
		mustPing(t, tp.vm["vm11"], "10.0.1.12", 5) // bridged, hv1 → hv2
		mustPing(t, tp.vm["vm22"], "10.0.1.11", 5) // routed, hv2 → hv1
		harness.Require(t, "iperf3")
		iperf(t, tp.vm["vm11"], tp.vm["vm12"], 2) // TCP across hosts
	})

	t.Run("OpenStackCLI", func(t *testing.T) {
		if _, err := exec.LookPath("openstack"); err != nil {
			t.Skip("the openstack CLI is not installed (scripts/setup.sh installs python3-openstackclient)")
		}
		run := func(withCA bool, args ...string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "openstack", args...)
			cmd.Env = os.Environ()
			for _, kv := range env.CLIEnv() {
				if withCA || !strings.HasPrefix(kv, "OS_CACERT=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			out, err := cmd.CombinedOutput()
			return string(out), err
		}
		if out, err := run(true, "network", "create", "secure-net", "-f", "value", "-c", "id"); err != nil {
			t.Fatalf("openstack network create with OS_CACERT: %v\n%s", err, out)
		}
		if out, err := run(true, "network", "list", "-f", "value", "-c", "Name"); err != nil || !strings.Contains(out, "secure-net") {
			t.Fatalf("openstack network list with OS_CACERT: %v\n%s", err, out)
		}
		if out, err := run(false, "network", "list"); err == nil || !strings.Contains(strings.ToLower(out), "certificate") {
			t.Errorf("openstack without the CA: %v, want a certificate failure:\n%s", err, out)
		}
	})

	t.Run("Gophercloud", func(t *testing.T) {
		ctx := context.Background()
		opts := gophercloud.AuthOptions{IdentityEndpoint: env.IdentityURL(), Username: "admin", Password: password,
			DomainName: "Default", TenantName: "admin"}
		prov, err := openstack.NewClient(env.IdentityURL())
		if err != nil {
			t.Fatal(err)
		}
		prov.HTTPClient = *env.HTTPClient() // trusts the server's CA
		if err := openstack.Authenticate(ctx, prov, opts); err != nil {
			t.Fatalf("log in over HTTPS with the CA: %v", err)
		}
		nc, err := openstack.NewNetworkV2(prov, gophercloud.EndpointOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(nc.Endpoint, "https://") {
			t.Errorf("the catalog's network endpoint %s is not HTTPS", nc.Endpoint)
		}
		n, err := networks.Create(ctx, nc, networks.CreateOpts{Name: "gophercloud-net"}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		if err := networks.Delete(ctx, nc, n.ID).ExtractErr(); err != nil {
			t.Fatal(err)
		}
		if _, err := openstack.AuthenticatedClient(ctx, opts); err == nil {
			t.Error("gophercloud without the CA trusted the server")
		}
		resp, err := http.Get(strings.Replace(env.API, "https://", "http://", 1) + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS API: %d, want 400", resp.StatusCode)
		}
		if c, err := tls.Dial("tcp", strings.TrimPrefix(env.API, "https://"), &tls.Config{MaxVersion: tls.VersionTLS11, InsecureSkipVerify: true}); err == nil { //nolint:gosec // a downgrade attempt
			c.Close()
			t.Error("the API accepted TLS 1.1")
		}
	})

	t.Run("Revoke", func(t *testing.T) {
		id, err := joinapi.LoadIdentity(filepath.Join(hv2.StateDir(), "identity"))
		if err != nil {
			t.Fatal(err)
		}
		if id.HostID != hv2.ID {
			t.Fatalf("hv2's identity names host %s, want %s", id.HostID, hv2.ID)
		}
		// The control: before the revocation hv1 tunnels to hv2.
		filter := "udp and dst host " + hv2.TunnelIP
		control := harness.StartCapture(t, hv1.NS, "ul0", filter)
		mustPing(t, tp.vm["vm11"], "10.0.1.12", 3)
		if pkts := control.Stop(t); len(pkts) == 0 {
			t.Fatalf("no packets to hv2 captured while pinging it: the capture (%s) sees nothing", filter)
		}
		env.MustCLI(t, "host %s revoke", hv2.Alias)
		start := time.Now()
		if err := harness.Eventually(15*time.Second, func() error {
			h, err := env.HostByName("hv2")
			if err != nil {
				return err
			}
			if h.Alive {
				return errNotYet("hv2 still alive")
			}
			return nil
		}); err != nil {
			t.Fatalf("hv2 after its revocation: %v", err)
		}
		t.Logf("hv2 dead %v after the revocation", time.Since(start).Round(time.Millisecond))
		if err := harness.Eventually(15*time.Second, func() error {
			if !hv2.AgentExited() {
				return errNotYet("hv2's agent still runs")
			}
			return nil
		}); err != nil {
			t.Errorf("%v:\n%s", err, hv2.AgentLog())
		} else if !strings.Contains(hv2.AgentLog(), "revoked") {
			t.Errorf("hv2's agent stopped without saying it was revoked:\n%s", hv2.AgentLog())
		}
		// Its certificate writes nothing more, on a new connection.
		st, err := nsdb.Dial(id.Endpoints, id.EtcdTLSConfig())
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = func() error {
			lease, err := st.GrantLease(ctx, 10*time.Second)
			if err != nil {
				return err
			}
			return st.SetHostAlive(ctx, id.HostID, lease)
		}()
		if err == nil {
			t.Error("the revoked host marked itself alive")
		}
		t.Logf("the revoked host's write: %v", err)
		// A restart with the revoked identity does not come back.
		if err := id.Renew(context.Background()); err == nil {
			t.Error("the revoked host renewed its certificate")
		}
		// Peers stop sending to it: hv1's VM gets no answer, and nothing
		// leaves hv1's underlay towards hv2.
		capture := harness.StartCapture(t, hv1.NS, "ul0", filter)
		if r := tp.vm["vm11"].Ping("10.0.1.12", 5, "0.2"); r.Received != 0 {
			t.Errorf("vm11 → vm12 on the revoked host: %d/%d answered", r.Received, r.Sent)
		}
		if pkts := capture.Stop(t); len(pkts) != 0 {
			t.Errorf("hv1 still tunnels to the revoked host: %d packets", len(pkts))
		}
		// hv1 is unaffected.
		mustPing(t, tp.vm["vm11"], "10.0.2.11", 3)
	})

	t.Run("PasswordNotLogged", func(t *testing.T) {
		if log := env.ServerLog(); strings.Contains(log, password) {
			t.Error("the server log contains the admin password")
		}
	})
}

type errNotYet string

func (e errNotYet) Error() string { return string(e) }
