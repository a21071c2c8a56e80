package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var serverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "nagare-server-test")
	if err != nil {
		panic(err)
	}
	serverBin = filepath.Join(dir, "nagare-server")
	out, err := exec.Command("go", "build", "-o", serverBin, "github.com/nagare/nagare/cmd/nagare-server").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build nagare-server: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type proc struct {
	cmd *exec.Cmd
	out *bytes.Buffer
	api string
}

// start runs nagare-server with args and waits for /healthz to answer.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	port := freePort(t)
	// --auth noauth unless the test says otherwise (a later flag wins).
	args = append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "warn", "--auth", "noauth"}, args...)
	cmd := exec.Command(serverBin, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, out: &out, api: fmt.Sprintf("http://127.0.0.1:%d", port)}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(p.api + "/healthz"); err == nil {
			resp.Body.Close()
			return p
		}
		if cmd.ProcessState != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("nagare-server %v did not come up:\n%s", args, out.String())
	return nil
}

// stop sends SIGTERM and requires a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("nagare-server exited uncleanly after SIGTERM: %v\n%s", err, p.out.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("nagare-server did not stop within 15 s of SIGTERM\n%s", p.out.String())
	}
}

func (p *proc) health(t *testing.T) int {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(p.api + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (p *proc) create(t *testing.T, path, body string) string {
	t.Helper()
	resp, err := http.Post(p.api+"/api/v1/"+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var o struct{ ID string }
	if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&o) != nil {
		t.Fatalf("POST %s: %d", path, resp.StatusCode)
	}
	return o.ID
}

func (p *proc) get(t *testing.T, path string) int {
	t.Helper()
	resp, err := http.Get(p.api + "/api/v1/" + path)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Everything written survives SIGTERM and a restart on the same data dir.
func TestRestartPersistence(t *testing.T) {
	data := t.TempDir()
	etcdArgs := func(scheme string) []string {
		return []string{"--data-dir", data,
			"--etcd-listen", fmt.Sprintf("%s127.0.0.1:%d", scheme, freePort(t)),
			"--etcd-peer-listen", fmt.Sprintf("%s127.0.0.1:%d", scheme, freePort(t))}
	}
	p := start(t, etcdArgs("http://")...)
	if p.health(t) != 200 {
		t.Fatal("healthz not 200")
	}
	br := p.create(t, "bridges", `{"name":"persist"}`)
	port := p.create(t, "bridges/"+br+"/ports", `{}`)
	p.stop(t)

	p = start(t, etcdArgs("")...) // HOST:PORT, as etcdctl takes it
	if p.get(t, "bridges/"+br) != 200 || p.get(t, "ports/"+port) != 200 {
		t.Fatalf("objects lost across restart\n%s", p.out.String())
	}
	p.stop(t)
}

// With --etcd-endpoints the server uses an external etcd (Debian's
// etcd-server binary, started here) and starts no embedded one; /healthz
// follows the NSDB's reachability.
func TestExternalEtcd(t *testing.T) {
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("etcd (Debian etcd-server) not installed; run scripts/setup.sh")
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	startEtcd := func() *exec.Cmd {
		cmd := exec.Command(etcdBin, "--name", "ext", "--data-dir", filepath.Join(t.TempDir(), "ext"),
			"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "ext="+peerURL, "--log-level", "error")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	etcd := startEtcd()

	data := t.TempDir()
	p := start(t, "--etcd-endpoints", clientURL, "--data-dir", data)
	if p.health(t) != 200 {
		t.Fatalf("healthz with external etcd:\n%s", p.out.String())
	}
	br := p.create(t, "bridges", `{"name":"external"}`)
	if entries, _ := os.ReadDir(data); len(entries) != 0 {
		t.Fatalf("external mode wrote an embedded etcd into the data dir: %v", entries)
	}
	// A second server replica on the same cluster sees the same topology;
	// it names the cluster HOST:PORT, as etcdctl takes it.
	p2 := start(t, "--etcd-endpoints", strings.TrimPrefix(clientURL, "http://"))
	if p2.get(t, "bridges/"+br) != 200 {
		t.Fatal("second replica does not see the bridge")
	}
	_ = etcd.Process.Kill()
	_ = etcd.Wait()
	if st := p.health(t); st != 503 {
		t.Fatalf("healthz with etcd down: %d, want 503", st)
	}
	// The APIs answer too, 503, instead of waiting for etcd with the
	// caller (the etcd client would wait for it to come back).
	c := http.Client{Timeout: 30 * time.Second} // the server gives up after 10 s
	for path, body := range map[string]string{"/api/v1/bridges": `{"name":"x"}`, "/v2.0/networks": `{"network":{"name":"x"}}`} {
		resp, err := c.Post(p.api+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s with etcd down: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 503 {
			t.Errorf("POST %s with etcd down: %d, want 503", path, resp.StatusCode)
		}
	}
	p.stop(t)
	p2.stop(t)
}
