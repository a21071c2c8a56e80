// Package etcdcluster runs a real multi-member etcd cluster of Debian's
// etcd-server binary on loopback, for the benchmarks and fault tests that
// need the external-cluster setup production uses (nagare-server
// --etcd-endpoints): members to kill, restart and compact under load.
package etcdcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binary is the etcd server executable (Debian's etcd-server package,
// installed by scripts/setup.sh), or an error saying how to get it.
func Binary() (string, error) {
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", errors.New("etcd (Debian's etcd-server) is not installed: run scripts/setup.sh")
	}
	return p, nil
}

// Cluster is a running cluster. Members are numbered from 0.
type Cluster struct {
	bin, dir string
	names    []string
	clients  []string // client URLs
	peers    []string // peer URLs
	initial  string   // --initial-cluster

	mu    sync.Mutex
	procs []*exec.Cmd // nil while a member is down
	done  []chan struct{}
}

// Start starts an n-member cluster with its data under dir and waits until
// it has a leader.
func Start(ctx context.Context, dir string, n int) (*Cluster, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, dir: dir, procs: make([]*exec.Cmd, n), done: make([]chan struct{}, n)}
	var initial []string
	for i := range n {
		name := fmt.Sprintf("m%d", i)
		c.names = append(c.names, name)
		c.clients = append(c.clients, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]))
		c.peers = append(c.peers, fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]))
		initial = append(initial, name+"="+c.peers[i])
	}
	c.initial = strings.Join(initial, ",")
	for i := range n {
		if err := c.start(i); err != nil {
			c.Stop()
			return nil, err
		}
	}
	if err := c.WaitHealthy(ctx); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string { return append([]string(nil), c.clients...) }

// Endpoint is member i's client URL.
func (c *Cluster) Endpoint(i int) string { return c.clients[i] }

// Size is the number of members.
func (c *Cluster) Size() int { return len(c.names) }

func (c *Cluster) start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.procs[i] != nil {
		return fmt.Errorf("etcd member %s is running", c.names[i])
	}
	data := filepath.Join(c.dir, c.names[i])
	state := "new"
	if _, err := os.Stat(data); err == nil {
		state = "existing"
	}
	cmd := exec.Command(c.bin, "--name", c.names[i], "--data-dir", data,
		"--listen-client-urls", c.clients[i], "--advertise-client-urls", c.clients[i],
		"--listen-peer-urls", c.peers[i], "--initial-advertise-peer-urls", c.peers[i],
		"--initial-cluster", c.initial, "--initial-cluster-state", state,
		"--initial-cluster-token", "nagare-"+filepath.Base(c.dir),
		// Like nagare-server's embedded etcd: room for cascading deletes.
		"--max-txn-ops", "2048", "--log-level", "error")
	log, err := os.OpenFile(filepath.Join(c.dir, c.names[i]+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start etcd member %s: %w", c.names[i], err)
	}
	done := make(chan struct{})
	go func() { // owned: Kill and Stop wait for it
		_ = cmd.Wait()
		log.Close()
		close(done)
	}()
	c.procs[i], c.done[i] = cmd, done
	return nil
}

// Kill SIGKILLs member i and waits for it to be gone.
func (c *Cluster) Kill(i int) error {
	c.mu.Lock()
	cmd, done := c.procs[i], c.done[i]
	c.procs[i] = nil
	c.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("etcd member %s is not running", c.names[i])
	}
	_ = cmd.Process.Kill()
	<-done
	return nil
}

// Restart starts a killed member again on its data directory.
func (c *Cluster) Restart(i int) error { return c.start(i) }

// Pid is member i's process id (0 while it is down).
func (c *Cluster) Pid(i int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.procs[i] == nil {
		return 0
	}
	return c.procs[i].Process.Pid
}

// WaitHealthy waits until every running member reports itself healthy
// (etcd's /health: it has a leader and serves reads).
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i := range c.names {
		if c.Pid(i) == 0 {
			continue
		}
		var last error
		for {
			if last = health(ctx, c.clients[i]); last == nil {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("etcd member %s is not healthy: %w", c.names[i], last)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func health(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct{ Health string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || h.Health != "true" {
		return fmt.Errorf("/health answered %s %q", resp.Status, h.Health)
	}
	return nil
}

// Stop kills every member.
func (c *Cluster) Stop() {
	for i := range c.names {
		if c.Pid(i) != 0 {
			_ = c.Kill(i)
		}
	}
}

func freePorts(n int) ([]int, error) {
	var out []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}
