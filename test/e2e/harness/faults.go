//go:build linux

package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/nagare/nagare/internal/etcdcluster"
)

// Faults: what the fault tests do to an environment — kill and restart
// the server, etcd members and agents, freeze an agent, cut a
// hypervisor's underlay link.

func (e *Env) startEtcdCluster(t testing.TB, members int) {
	t.Helper()
	if _, err := etcdcluster.Binary(); err != nil {
		t.Skip("skipping: " + err.Error())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := etcdcluster.Start(ctx, filepath.Join(e.dir, "etcd"), members)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	e.Etcd = c
}

// runServer starts nagare-server with e.serverArgs and e.serverEnv and
// waits until it is healthy (and, with authentication, logged in to).
func (e *Env) runServer(t testing.TB) error {
	e.server = startProcEnv(t, filepath.Join(e.dir, "server.log"), e.serverEnv, Binaries.Server, e.serverArgs...)
	err := Eventually(30*time.Second, func() error {
		if e.server.Exited() {
			return stop{errors.New("nagare-server exited")}
		}
		if e.secure && e.client == http.DefaultClient {
			if err := e.trustCA(); err != nil {
				return err
			}
		}
		resp, err := e.client.Get(e.API + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("healthz: %s", resp.Status)
		}
		return nil
	})
	if err == nil && e.password != "" {
		e.token, err = e.login()
	}
	return err
}

// KillServer SIGKILLs nagare-server (and its embedded etcd with it), as a
// crash or a power cut would.
func (e *Env) KillServer() { e.server.Kill() }

// RestartServer starts nagare-server again on the same data directory and
// addresses, and waits until it is healthy.
func (e *Env) RestartServer(t testing.TB) {
	t.Helper()
	if err := e.runServer(t); err != nil {
		t.Fatalf("restarted nagare-server: %v\n%s", err, tail(filepath.Join(e.dir, "server.log"), 40))
	}
}

// Health is /healthz's status now (0 when the server does not answer).
func (e *Env) Health() int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.API+"/healthz", nil)
	if err != nil {
		return 0
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// FreezeAgent stops the agent (SIGSTOP): it neither forwards new flows
// nor talks to the NSDB, as a hung process; ThawAgent resumes it.
func (h *Hypervisor) FreezeAgent() error { return h.agent.cmd.Process.Signal(syscall.SIGSTOP) }

// ThawAgent resumes a frozen agent (SIGCONT).
func (h *Hypervisor) ThawAgent() error { return h.agent.cmd.Process.Signal(syscall.SIGCONT) }

// SetUnderlay brings the hypervisor's underlay link (ul0) down or up, as a
// pulled cable or a flapping switch port would.
func (h *Hypervisor) SetUnderlay(up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	_, err := h.NS.Run("ip", "link", "set", "ul0", state)
	return err
}
