//go:build linux

// Package harness runs Nagare end to end on one machine, the way DESIGN.md
// ("Testing on one machine") describes: the real nagare-server with its
// embedded etcd on free loopback ports, one real nagare-agent per
// "hypervisor" network namespace, "VM" namespaces whose veth peers live in a
// hypervisor namespace, real QEMU guests whose taps live there (qemu.go),
// and the real nagare CLI.
//
// Underlay: every hypervisor namespace has an interface "ul0" (10.99.0.N/24)
// whose veth peer is enslaved to a Linux bridge "br0" in a dedicated
// underlay namespace (which itself has 10.99.0.254, for capturing and for
// injecting tunnel packets). Nothing is created in, or addressed from, the
// root namespace except loopback (API, etcd, metrics).
//
// Every namespace is named NamePrefix+pid+"-"+env+"-"+role, and is deleted
// in t.Cleanup together with the processes inside it; agents and the server
// are killed in t.Cleanup, and with the test process (Pdeathsig).
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nagare/nagare/internal/etcdcluster"
)

// Binaries are the programs an environment runs, built once per test binary
// by Build.
var Binaries struct {
	Dir                string
	Server, Agent, CLI string
	built              bool
}

// Build compiles nagare-server, nagare-agent and nagare into dir.
func Build(dir string) error {
	gobin, err := exec.LookPath("go")
	if err != nil {
		gobin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(gobin, "build", "-o", dir+"/",
		"github.com/nagare/nagare/cmd/nagare-server",
		"github.com/nagare/nagare/cmd/nagare-agent",
		"github.com/nagare/nagare/cmd/nagare")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	Binaries.Dir = dir
	Binaries.Server = filepath.Join(dir, "nagare-server")
	Binaries.Agent = filepath.Join(dir, "nagare-agent")
	Binaries.CLI = filepath.Join(dir, "nagare")
	Binaries.built = true
	return nil
}

// Tools the environment itself needs; tests name theirs in Require.
var baseTools = []string{"ip", "ping"}

// Why returns why end-to-end tests cannot run here ("" when they can).
func Why(tools ...string) string {
	if os.Geteuid() != 0 {
		return "end-to-end tests need root (network namespaces, AF_PACKET, raw sockets): run as root or with sudo"
	}
	for _, tool := range append(append([]string(nil), baseTools...), tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Sprintf("end-to-end test needs %q, which is not installed (scripts/setup.sh installs it)", tool)
		}
	}
	return ""
}

// Require skips the test unless it runs as root with the tools installed
// and the binaries built.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping end-to-end test in -short mode")
	}
	if why := Why(tools...); why != "" {
		t.Skip("skipping: " + why)
	}
	if !Binaries.built {
		t.Skip("skipping: binaries not built (harness.Build was not called, or failed)")
	}
}

// Options shape an environment.
type Options struct {
	Hypervisors int // default 2
	UnderlayMTU int // MTU of the underlay links, passed to agents; default 1500
	LogLevel    string
	AgentArgs   []string // more nagare-agent flags, for every agent
	// HostAgentArgs are more nagare-agent flags by hypervisor name ("hv1").
	HostAgentArgs map[string][]string
	// Nice runs the agents of the hypervisors named at this niceness (as
	// nice -n does), as a dedicated gateway's control plane would be
	// given priority on a machine shared with other work.
	Nice map[string]int
	// InNamespace names the hypervisors whose agent runs inside their
	// namespace, as a gateway's must for its BGP speakers (their sockets
	// live in the agent's namespace): it reaches the NSDB through a Relay
	// (Hypervisor.NSDB), which a test can cut.
	InNamespace []string
	// AdminPassword, when set, runs the server with password
	// authentication (user admin of project admin) instead of noauth;
	// Call, CLI and CLIEnv then authenticate. The server gets it from
	// NAGARE_ADMIN_PASSWORD, not its command line.
	AdminPassword string
	// EtcdCluster, when set, runs an external etcd cluster of that many
	// members (Debian's etcd) that the server and agents use
	// (--etcd-endpoints) instead of the server's embedded etcd.
	EtcdCluster int
	// Secure runs the server with TLS (--tls: HTTPS API, etcd with client
	// certificates and RBAC; on loopback, where the harness listens) and
	// the agents joining it with a token from `nagare-server token
	// create`; Call, CLI, CLIEnv and HTTPClient trust its CA.
	Secure bool
}

var envSeq atomic.Int32

// Env is one running Nagare: a server, an underlay and hypervisors.
type Env struct {
	T           testing.TB
	Prefix      string // namespace prefix of this environment
	API         string // http://127.0.0.1:PORT
	EtcdURL     string // where agents reach the NSDB: a comma-separated list with EtcdCluster
	Etcd        *etcdcluster.Cluster
	Underlay    *NS
	UnderlayMTU int
	Hosts       []*Hypervisor
	dir         string
	server      *Proc
	logLevel    string
	agentArgs   []string
	hostArgs    map[string][]string
	password    string // the admin's, when the server authenticates
	token       string // the admin's token for Call
	serverArgs  []string
	serverEnv   []string
	secure      bool
	dataDir     string       // the server's
	CAFile      string       // the server's CA, in secure mode
	joinToken   string       // what agents join with, in secure mode
	client      *http.Client // trusts CAFile in secure mode
}

// Hypervisor is a namespace with its agent.
type Hypervisor struct {
	env         *Env
	Name        string // host name, "hv1"
	NS          *NS
	TunnelIP    string // 10.99.0.N
	MetricsAddr string // 127.0.0.1:PORT
	ID          string // host UUID once registered
	Alias       string // CLI alias, "host0"
	// AgentArgs are extra nagare-agent flags for the next StartAgent
	// (e.g. --conntrack-zone-max).
	AgentArgs []string
	// InNamespace runs the agent inside NS (Options.InNamespace); NSDB is
	// its way to the NSDB then.
	InNamespace bool
	NSDB        *Relay
	// Nice is the agent's niceness (Options.Nice).
	Nice  int
	agent *Proc
	// innerMetrics is where an agent in its namespace serves metrics.
	innerMetrics string
}

// New starts an environment and stops it in t.Cleanup.
func New(t testing.TB, opts Options) *Env {
	t.Helper()
	Require(t)
	if opts.Hypervisors == 0 {
		opts.Hypervisors = 2
	}
	if opts.UnderlayMTU == 0 {
		opts.UnderlayMTU = 1500
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "info"
	}
	e := &Env{T: t, Prefix: fmt.Sprintf("%s%d-%d", NamePrefix, os.Getpid(), envSeq.Add(1)),
		UnderlayMTU: opts.UnderlayMTU, dir: t.TempDir(), logLevel: opts.LogLevel, agentArgs: opts.AgentArgs,
		hostArgs: opts.HostAgentArgs, password: opts.AdminPassword, secure: opts.Secure, client: http.DefaultClient}
	t.Cleanup(e.dumpLogsOnFailure)
	if opts.EtcdCluster > 0 {
		e.startEtcdCluster(t, opts.EtcdCluster)
	}
	e.startServer(t)

	e.Underlay = newNS(t, e.Prefix+"-ul")
	e.Underlay.MustRun(t, "ip", "link", "add", "br0", "mtu", strconv.Itoa(opts.UnderlayMTU), "type", "bridge")
	e.Underlay.MustRun(t, "ip", "addr", "add", "10.99.0.254/24", "dev", "br0")
	e.Underlay.MustRun(t, "ip", "link", "set", "br0", "up")
	for i := 1; i <= opts.Hypervisors; i++ {
		h := &Hypervisor{env: e, Name: fmt.Sprintf("hv%d", i), TunnelIP: fmt.Sprintf("10.99.0.%d", i)}
		h.NS = newNS(t, e.Prefix+"-"+h.Name)
		h.removePinsOnCleanup(t)
		veth(t, h.NS, "ul0", e.Underlay, h.Name)
		mtu := strconv.Itoa(opts.UnderlayMTU)
		e.Underlay.MustRun(t, "ip", "link", "set", h.Name, "mtu", mtu, "master", "br0", "up")
		h.NS.MustRun(t, "ip", "link", "set", "ul0", "mtu", mtu, "up")
		h.NS.MustRun(t, "ip", "addr", "add", h.TunnelIP+"/24", "dev", "ul0")
		h.MetricsAddr = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		h.InNamespace = slices.Contains(opts.InNamespace, h.Name)
		h.Nice = opts.Nice[h.Name]
		e.Hosts = append(e.Hosts, h)
	}
	// One at a time, so that host aliases follow the hypervisors' order
	// (host0 is hv1): aliases are creation order.
	for i, h := range e.Hosts {
		h.StartAgent(t)
		h.Alias = fmt.Sprintf("host%d", i)
	}
	return e
}

// Host returns the hypervisor called name ("hv1").
func (e *Env) Host(name string) *Hypervisor {
	for _, h := range e.Hosts {
		if h.Name == name {
			return h
		}
	}
	panic("harness: no hypervisor " + name)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func (e *Env) startServer(t testing.TB) {
	t.Helper()
	scheme := "http"
	if e.secure {
		scheme = "https"
	}
	for attempt := 0; ; attempt++ {
		listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		e.API = scheme + "://" + listen
		e.dataDir = filepath.Join(e.dir, fmt.Sprintf("data%d", attempt))
		e.serverArgs = []string{"--data-dir", e.dataDir, "--listen", listen, "--log-level", e.logLevel, "--auth", "noauth"}
		e.serverEnv = nil
		if e.Etcd != nil {
			e.EtcdURL = strings.Join(e.Etcd.Endpoints(), ",")
			e.serverArgs = append(e.serverArgs, "--etcd-endpoints", e.EtcdURL)
		} else {
			e.EtcdURL = fmt.Sprintf("%s://127.0.0.1:%d", scheme, freePort(t))
			peer := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
			e.serverArgs = append(e.serverArgs, "--etcd-listen", e.EtcdURL, "--etcd-peer-listen", peer)
		}
		if e.password != "" {
			e.serverArgs = append(e.serverArgs, "--auth", "password")
			e.serverEnv = []string{"NAGARE_ADMIN_PASSWORD=" + e.password}
		}
		if e.secure {
			e.serverArgs = append(e.serverArgs, "--tls")
		}
		err := e.runServer(t)
		if err == nil && e.secure {
			e.joinToken, err = e.createJoinToken()
		}
		if err == nil {
			return
		}
		e.client = http.DefaultClient
		e.server.Kill()
		if attempt == 2 { // a port taken between freePort and the bind is the likely cause
			t.Fatalf("nagare-server did not become healthy: %v\n%s", err, tail(filepath.Join(e.dir, "server.log"), 40))
		}
	}
}

// trustCA makes the harness's HTTP client trust the server's CA, once
// the server has made it.
func (e *Env) trustCA() error {
	ca := filepath.Join(e.dataDir, "pki", "ca.crt")
	b, err := os.ReadFile(ca)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return fmt.Errorf("%s holds no certificate", ca)
	}
	e.CAFile = ca
	e.client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	return nil
}

// createJoinToken runs `nagare-server token create` as an operator would.
func (e *Env) createJoinToken() (string, error) {
	out, err := exec.Command(Binaries.Server, "token", "create", "--data-dir", e.dataDir, "--ttl", "1h", "--description", "e2e").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("nagare-server token create: %w: %s", err, out)
	}
	return strings.TrimSpace(string(out)), nil
}

// HTTPClient is a client of the API (trusting the server's CA in secure
// mode).
func (e *Env) HTTPClient() *http.Client { return e.client }

// StartAgent starts (or restarts) the hypervisor's agent and waits until its
// host is registered and alive. In secure mode it joins the server with
// the environment's token (a restart finds its certificate in its state
// directory).
func (h *Hypervisor) StartAgent(t testing.TB) {
	t.Helper()
	e := h.env
	nsdbArgs := []string{"--etcd-endpoints", e.EtcdURL}
	if e.secure {
		nsdbArgs = []string{"--join", e.API, "--token", e.joinToken}
	}
	place, metrics := []string{"--netns", h.NS.Path}, h.MetricsAddr
	if h.InNamespace {
		if e.secure {
			t.Fatalf("harness: %s: an agent inside its namespace does not join a secure server (no relay to the API)", h.Name)
		}
		if h.NSDB == nil {
			h.NSDB = relayInto(t, h.NS, strings.TrimPrefix(e.EtcdURL, "http://"))
			inner := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			h.MetricsAddr = relayOut(t, h.NS, inner).Addr
			h.innerMetrics = inner
		}
		nsdbArgs, place, metrics = []string{"--etcd-endpoints", "http://" + h.NSDB.Addr}, nil, h.innerMetrics
	}
	args := append(append(append([]string{"--host-name", h.Name, "--tunnel-ip", h.TunnelIP}, nsdbArgs...), place...),
		"--metrics-listen", metrics, "--underlay-mtu", strconv.Itoa(e.UnderlayMTU), "--log-level", e.logLevel,
		"--state-dir", h.StateDir())
	args = append(args, e.agentArgs...)
	args = append(args, "--datapath", Datapath())
	args = append(args, h.AgentArgs...)
	args = append(args, e.hostArgs[h.Name]...)
	bin := Binaries.Agent
	if h.InNamespace {
		bin, args = "ip", append([]string{"netns", "exec", h.NS.Name, Binaries.Agent}, args...)
	}
	if h.Nice != 0 {
		bin, args = "nice", append([]string{"-n", strconv.Itoa(h.Nice), bin}, args...)
	}
	h.agent = startProc(t, filepath.Join(e.dir, h.Name+".log"), bin, args...)
	err := Eventually(20*time.Second, func() error {
		if h.agent.Exited() {
			return stop{fmt.Errorf("nagare-agent %s exited", h.Name)}
		}
		host, err := e.HostByName(h.Name)
		if err != nil {
			return err
		}
		if !host.Alive {
			return fmt.Errorf("host %s registered but not alive", h.Name)
		}
		h.ID = host.ID
		return nil
	})
	if err != nil {
		t.Fatalf("agent %s: %v\n%s", h.Name, err, tail(filepath.Join(e.dir, h.Name+".log"), 40))
	}
}

// StateDir is the agent's --state-dir (its saved flow state).
func (h *Hypervisor) StateDir() string { return filepath.Join(h.env.dir, h.Name+"-state") }

// KillAgent kills the agent with SIGKILL, as a crash would.
func (h *Hypervisor) KillAgent() { h.agent.Kill() }

// ServerLog returns the server's log so far.
func (e *Env) ServerLog() string {
	b, _ := os.ReadFile(filepath.Join(e.dir, "server.log"))
	return string(b)
}

// AgentExited reports whether the agent's process has ended.
func (h *Hypervisor) AgentExited() bool { return h.agent.Exited() }

// AgentLog returns the agent's log so far.
func (h *Hypervisor) AgentLog() string {
	b, _ := os.ReadFile(filepath.Join(h.env.dir, h.Name+".log"))
	return string(b)
}

// HostInfo is a host as the API shows it.
type HostInfo struct {
	ID        string   `json:"id"`
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	Alive     bool     `json:"alive"`
}

// HostByName reads a host from the API.
func (e *Env) HostByName(name string) (*HostInfo, error) {
	var hosts []HostInfo
	if err := e.Call("GET", "/api/v1/hosts", nil, &hosts); err != nil {
		return nil, err
	}
	for i := range hosts {
		if hosts[i].Name == name {
			return &hosts[i], nil
		}
	}
	return nil, fmt.Errorf("host %s is not registered", name)
}

// CLI runs one command with the real nagare binary ("nagare -e CMD") and
// returns its standard output; the error carries standard error.
func (e *Env) CLI(cmd string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := exec.CommandContext(ctx, Binaries.CLI, "--api", e.API, "-e", cmd)
	c.Env = append(os.Environ(), e.CLIEnv()...)
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		return stdout.String(), fmt.Errorf("nagare -e %q: %w: %s", cmd, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// MustCLI is CLI that fails the test on error; it returns the trimmed output.
func (e *Env) MustCLI(t testing.TB, format string, args ...any) string {
	t.Helper()
	out, err := e.CLI(fmt.Sprintf(format, args...))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// Call sends a request to the native API and decodes a JSON answer into
// out (when not nil). Non-2xx answers are errors carrying the status and
// body; *HTTPError lets callers test the status.
func (e *Env) Call(method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.API+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if e.token != "" {
		req.Header.Set("X-Auth-Token", e.token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &HTTPError{Status: resp.StatusCode, Body: strings.TrimSpace(string(b)), What: method + " " + path}
	}
	if out != nil && len(b) > 0 {
		return json.Unmarshal(b, out)
	}
	return nil
}

// login gets the admin's token from the server's identity service.
func (e *Env) login() (string, error) {
	body := fmt.Sprintf(`{"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "admin", "password": %q, "domain": {"name": "Default"}}}},
		"scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}}`, e.password)
	resp, err := e.client.Post(e.API+"/identity/v3/auth/tokens", "application/json", strings.NewReader(body))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if tok := resp.Header.Get("X-Subject-Token"); resp.StatusCode == http.StatusCreated && tok != "" {
		return tok, nil
	}
	return "", fmt.Errorf("log in as admin: %s", resp.Status)
}

// AdminPassword is the admin's password ("" with noauth).
func (e *Env) AdminPassword() string { return e.password }

// IdentityURL is the server's Keystone v3 endpoint.
func (e *Env) IdentityURL() string { return e.API + "/identity/v3" }

// CLIEnv is the environment that logs the nagare and openstack CLIs in as
// the admin (nothing with noauth).
func (e *Env) CLIEnv() []string {
	var env []string
	if e.CAFile != "" {
		env = append(env, "OS_CACERT="+e.CAFile)
	}
	if e.password == "" {
		return env
	}
	return append(env, "OS_AUTH_URL="+e.IdentityURL(), "OS_IDENTITY_API_VERSION=3", "OS_AUTH_TYPE=password",
		"OS_USERNAME=admin", "OS_PASSWORD="+e.password, "OS_PROJECT_NAME=admin",
		"OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default", "OS_INTERFACE=public")
}

// NewNS creates a namespace of the environment named after role, deleted
// at the end of the test (for networks outside the cloud).
func (e *Env) NewNS(t testing.TB, role string) *NS {
	t.Helper()
	return newNS(t, e.Prefix+"-"+role)
}

// Veth links namespace a (interface ifA) to namespace b (ifB).
func Veth(t testing.TB, a *NS, ifA string, b *NS, ifB string) {
	t.Helper()
	veth(t, a, ifA, b, ifB)
}

// HTTPError is a non-2xx API answer.
type HTTPError struct {
	Status int
	Body   string
	What   string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("%s: %d %s", e.What, e.Status, e.Body) }

// stop makes Eventually give up at once.
type stop struct{ error }

// Eventually calls f every 100 ms until it returns nil or timeout passes;
// it returns f's last error. Wrapping an error in stop ends it early.
func Eventually(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return nil
		}
		var s stop
		if errors.As(err, &s) {
			return s.error
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Proc is a process of the environment (server or agent).
type Proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// startProc starts a program logging to logPath (appended) and kills it in
// t.Cleanup: SIGTERM, then SIGKILL after 5 s.
func startProc(t testing.TB, logPath, bin string, args ...string) *Proc {
	t.Helper()
	return startProcEnv(t, logPath, nil, bin, args...)
}

// startProcEnv is startProc with more environment variables (kept out of
// the log, unlike the arguments: they carry secrets).
func startProcEnv(t testing.TB, logPath string, env []string, bin string, args ...string) *Proc {
	t.Helper()
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "### %s %s %s\n", time.Now().Format(time.RFC3339Nano), filepath.Base(bin), strings.Join(args, " "))
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", bin, err)
	}
	p := &Proc{cmd: cmd, done: make(chan struct{}), log: f}
	go func() {
		_ = cmd.Wait()
		fmt.Fprintf(f, "### %s exited: %v\n", time.Now().Format(time.RFC3339Nano), cmd.ProcessState)
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	return p
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Stop sends SIGTERM and kills the process if it has not ended in grace.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Kill()
	}
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return path + ":\n  " + strings.Join(lines, "\n  ")
}

// logLines is how many lines of each log a failed test shows (60, or
// NAGARE_E2E_LOG_LINES).
func logLines() int {
	if v, err := strconv.Atoi(os.Getenv("NAGARE_E2E_LOG_LINES")); err == nil {
		return v
	}
	return 60
}

// dumpLogsOnFailure prints the end of every log when the test failed.
func (e *Env) dumpLogsOnFailure() {
	if !e.T.Failed() {
		return
	}
	n := logLines()
	var b strings.Builder
	b.WriteString(tail(filepath.Join(e.dir, "server.log"), n))
	for _, h := range e.Hosts {
		b.WriteString("\n" + tail(filepath.Join(e.dir, h.Name+".log"), n))
	}
	e.T.Logf("logs of the failed environment %s (last %d lines each; NAGARE_E2E_LOG_LINES for more):\n%s", e.Prefix, n, b.String())
}

// Main is the TestMain of packages whose tests run environments: it
// builds the binaries once into a temporary directory (removed after the
// tests), sweeps namespaces left by a killed run, and runs the tests;
// without root or in -short mode the tests run anyway, each skipping with
// the reason.
func Main(m *testing.M, name string) {
	flag.Parse()
	if testing.Short() || Why() != "" {
		os.Exit(m.Run())
	}
	SweepStale()
	dir, err := os.MkdirTemp("", "nagare-"+name+"-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, name+": cannot build the binaries:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// Datapath is the datapath the agents run: NAGARE_E2E_DATAPATH, which CI
// sets to run the suite on each datapath in turn, or userspace. A test's
// own --datapath flag comes later and wins.
func Datapath() string {
	if dp := os.Getenv("NAGARE_E2E_DATAPATH"); dp != "" {
		return dp
	}
	return "userspace"
}
