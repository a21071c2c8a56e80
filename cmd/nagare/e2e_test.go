package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/nsdb"
)

// The end-to-end test builds the real binaries, starts nagare-server with
// its embedded etcd on free ports, and drives it with one nagare process
// per command, exactly as an operator or a script would.

type e2e struct {
	t       *testing.T
	bin     string // directory holding nagare and nagare-server
	api     string
	etcdURL string
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

func startServer(t *testing.T, auth ...string) *e2e {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and starts nagare-server")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/nagare-server", "./cmd/nagare")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	e := &e2e{t: t, bin: bin}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	e.api = "http://" + listen
	e.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	ctx, cancel := context.WithCancel(context.Background())
	srv := exec.CommandContext(ctx, filepath.Join(bin, "nagare-server"), "--data-dir", t.TempDir(), "--listen", listen,
		"--etcd-listen", e.etcdURL, "--etcd-peer-listen", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), "--log-level", "warn")
	if len(auth) == 0 {
		auth = []string{"--auth", "noauth"}
	}
	srv.Args = append(srv.Args, auth...)
	var log bytes.Buffer
	srv.Stdout, srv.Stderr = &log, &log
	srv.Cancel = func() error { return srv.Process.Signal(os.Interrupt) }
	srv.WaitDelay = 10 * time.Second
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("nagare-server log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(e.api + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return e
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("nagare-server did not answer within a minute: %v\n%s", err, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// etcd returns a client of the server's etcd, closed when the test ends.
func (e *e2e) etcd() *clientv3.Client {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { cli.Close() })
	return cli
}

// registerHost creates a host through the API and makes it alive the way
// an agent does: by holding an etcd lease on its liveness key. It returns
// the host's id.
func (e *e2e) registerHost(name string) string {
	t := e.t
	resp, err := http.Post(e.api+"/api/v1/hosts", "application/json", strings.NewReader(`{"name":"`+name+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil || resp.StatusCode != 201 {
		t.Fatalf("create host: %d %v", resp.StatusCode, err)
	}
	cli := e.etcd()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := cli.Grant(ctx, 300)
	if err != nil {
		t.Fatal(err)
	}
	if err := nsdb.New(cli).SetHostAlive(ctx, h.ID, lease.ID); err != nil {
		t.Fatal(err)
	}
	return h.ID
}

// nagare runs the CLI with args and stdin, returning stdout, stderr and
// the exit status.
func (e *e2e) nagare(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	return e.nagareIn(e.t.TempDir(), stdin, args...)
}

// nagareIn is nagare with HOME (and so the token cache) in home.
func (e *e2e) nagareIn(home, stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(e.bin, "nagare"), args...)
	cmd.Env = append(os.Environ(), "NAGARE_API="+e.api, "HOME="+home, "XDG_CACHE_HOME=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return out.String(), errOut.String(), code
}

// The brief's session, one nagare -e per line. A port cannot be linked and
// bound at once, so the peer is checked from both sides and cleared before
// bridge0:port0 is bound.
var session = []struct{ line, want string }{
	{"create tunnel-zone name vxlan-tz type vxlan", "tzone0"},
	{"list tunnel-zone", "tzone tzone0 name vxlan-tz type vxlan"},
	{"create bridge name internal", "bridge0"},
	{"bridge bridge0 add port", "bridge0:port0"},
	{"create router name MidoNet Provider Router", "router0"},
	{"router router0 add port address 10.0.0.1 net 10.0.0.0/24", "router0:port0"},
	{"bridge bridge0 port port0 set peer router0:port0", ""},
	{"router router0 list port", `~port port0 device router0 state up plugged no mac [0-9a-f]{2}(:[0-9a-f]{2}){5} address 10.0.0.1 net 10.0.0.0/24 peer bridge0:port0`},
	{"bridge bridge0 list port", "port port0 device bridge0 state up plugged no peer router0:port0"},
	{"router router0 add route src 0.0.0.0/0 dst 10.0.0.0/24 type normal port router0:port0", "router0:route0"},
	{"bridge bridge0 add dhcp subnet 10.0.0.0/24 gw 10.0.0.1", "bridge bridge0 gw 10.0.0.1 server 10.0.0.1 subnet 10.0.0.0/24"},
	{"list router", "router router0 name MidoNet Provider Router state up"},
	{"list bridge", "bridge bridge0 name internal state up"},
	{"list host", "host host0 name carlsberg alive true"},
	{"tunnel-zone tzone0 add member host host0 address 192.168.100.201", "zone tzone0 host host0 address 192.168.100.201"},
	{"bridge bridge0 port port0 clear peer", ""},
	{"host host0 add binding interface leftdp port bridge0:port0", "host host0 interface leftdp port bridge0:port0"},
	{"create chain name dnat", "chain0"},
	{"chain chain0 add rule dst 10.81.14.201 proto 6 dst-port 80 type dnat action accept target 172.16.20.100:80", "chain0:rule0"},
	{"router router0 set infilter chain0", ""},
	// And what the session built, read back.
	{"list router", "router router0 name MidoNet Provider Router state up infilter chain0"},
	{"router router0 list route", "route route0 type normal src 0.0.0.0/0 dst 10.0.0.0/24 port router0:port0 weight 100"},
	{"chain chain0 list rule", "rule rule0 dst 10.81.14.201/32 proto 6 dst-port 80 pos 1 type dnat action accept target 172.16.20.100:80"},
	{"host host0 list binding", "host host0 interface leftdp port bridge0:port0"},
	{"bridge bridge0 port port0 show plugged", "yes"},
	{"tunnel-zone tzone0 list member", "zone tzone0 host host0 address 192.168.100.201"},
	{"bridge bridge0 dhcp subnet 10.0.0.0/24 show gw", "10.0.0.1"},
}

func TestEndToEnd(t *testing.T) {
	e := startServer(t)
	e.registerHost("carlsberg")

	t.Run("session", func(t *testing.T) {
		for _, s := range session {
			out, errOut, code := e.nagare("", "-e", s.line)
			got := strings.TrimSuffix(out, "\n")
			if code != 0 || errOut != "" {
				t.Fatalf("%s: exit %d, stderr %q", s.line, code, errOut)
			}
			if re, ok := strings.CutPrefix(s.want, "~"); ok {
				if !regexp.MustCompile("^" + re + "$").MatchString(got) {
					t.Errorf("%s:\n got %q\nwant /%s/", s.line, got, re)
				}
			} else if got != s.want {
				t.Errorf("%s:\n got %q\nwant %q", s.line, got, s.want)
			}
		}
	})

	t.Run("json", func(t *testing.T) {
		out, _, code := e.nagare("", "-o", "json", "-e", "list router")
		var routers []map[string]any
		if err := json.Unmarshal([]byte(out), &routers); err != nil || code != 0 || len(routers) != 1 ||
			routers[0]["name"] != "MidoNet Provider Router" || routers[0]["inbound_filter_id"] == nil {
			t.Fatalf("exit %d, %v: %s", code, err, out)
		}
		out, _, _ = e.nagare("", "-o", "json", "-e", "router router0 show id")
		if strings.TrimSpace(out) != `"`+routers[0]["id"].(string)+`"` {
			t.Fatalf("show id: %s", out)
		}
		// Several -e run in order; positional words extend the last one.
		out, _, code = e.nagare("", "-e", "list tunnel-zone", "-e", "list", "bridge")
		if code != 0 || out != "tzone tzone0 name vxlan-tz type vxlan\nbridge bridge0 name internal state up\n" {
			t.Fatalf("exit %d: %q", code, out)
		}
	})

	t.Run("script", func(t *testing.T) {
		script := "# a script on stdin\ncreate bridge name 'scripted net'\nbridge bridge1 add port\n\nbridge bridge9 show\ncreate bridge name never\n"
		out, errOut, code := e.nagare(script)
		if code != 1 || out != "bridge1\nbridge1:port0\n" ||
			errOut != "User error: there is no bridge bridge9 (there are 2: bridge0 to bridge1)\n" {
			t.Fatalf("exit %d, out %q, err %q", code, out, errOut)
		}
		out, _, _ = e.nagare("", "-e", "list bridge name never")
		if out != "" {
			t.Fatalf("the script went on after its failure: %q", out)
		}
		out, errOut, code = e.nagare("list bridge name scripted net\nbridge bridge1 port port0 delete\nbridge bridge1 delete\n")
		if code != 0 || errOut != "" || out != "bridge bridge1 name scripted net state up\n" {
			t.Fatalf("exit %d, out %q, err %q", code, out, errOut)
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, tc := range []struct {
			args   []string
			code   int
			stderr string // "~" starts a regular expression
		}{
			{[]string{"-e", "list brdge"}, 1, "Syntax error at: brdge\n"},
			{[]string{"-e", "create router name"}, 1, "Missing arguments, incomplete command\n"},
			{[]string{"-e", "router router0 set state sideways"}, 1, "Syntax error at: sideways\n  state: \"sideways\" is not one of up, down\n"},
			{[]string{"-e", "router router0 add port address 10.0.0.9"}, 1, "User error: net: a router port address needs its network (net)\n"},
			{[]string{"-e", "bridge bridge0 add port", "-e", "bridge bridge0 port port1 set peer router0:port0", "-e",
				"host host0 add binding interface eth9 port bridge0:port1"}, 1,
				"User error: peer: a port is either bound to an interface or linked to a peer, not both\n"},
			{[]string{"-e", "delete bridge bridge0"}, 1, `~User error: bridge bridge0 still has 2 port\(s\) \(e\.g\. port bridge0:port[01] via bridge_id\); delete them first\n`},
			{[]string{"--api", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)), "-e", "list bridge"}, 2, ""},
			{[]string{"-o", "yaml", "-e", "list bridge"}, 2, "nagare: -o \"yaml\": want text or json\n"},
			{[]string{"--no-such-flag"}, 2, "nagare: unknown flag: --no-such-flag\n"},
		} {
			out, errOut, code := e.nagare("", tc.args...)
			okErr := tc.stderr == "" || errOut == tc.stderr
			if re, ok := strings.CutPrefix(tc.stderr, "~"); ok {
				okErr = regexp.MustCompile("^" + re + "$").MatchString(errOut)
			}
			if code != tc.code || !okErr {
				t.Errorf("%q: exit %d, stdout %q, stderr %q; want exit %d, stderr %q", tc.args, code, out, errOut, tc.code, tc.stderr)
			}
			if tc.code == 2 && !strings.HasPrefix(errOut, "nagare: ") {
				t.Errorf("%q: startup error %q", tc.args, errOut)
			}
		}
	})

	t.Run("trace", func(t *testing.T) { e.trace(t) })
	t.Run("datapath", func(t *testing.T) { e.datapath(t) })
	t.Run("interactive", func(t *testing.T) { e.interactive(t) })
}

// run runs one command that must succeed and returns its output.
func (e *e2e) run(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := e.nagare("", args...)
	if code != 0 || errOut != "" {
		t.Fatalf("%q: exit %d, stderr %q", args, code, errOut)
	}
	return out
}

// trace walks a TCP packet from a VM on one bridge through a router to a
// VM on another bridge bound on another host of the tunnel zone, and
// checks the server's simulation reads in aliases and names.
func (e *e2e) trace(t *testing.T) {
	e.registerHost("tuborg") // host1
	for _, s := range []struct{ line, want string }{
		{"tunnel-zone tzone0 add member host host1 address 192.168.100.202", "zone tzone0 host host1 address 192.168.100.202"},
		{"create bridge name left", "bridge1"},
		{"create bridge name right", "bridge2"},
		{"create router name edge", "router1"},
		{"bridge bridge1 add port", "bridge1:port0"},
		{"host host0 add binding interface tap-left port bridge1:port0", "host host0 interface tap-left port bridge1:port0"},
		{"bridge bridge2 add port", "bridge2:port0"},
		{"host host1 add binding interface tap-right port bridge2:port0", "host host1 interface tap-right port bridge2:port0"},
		{"router router1 add port address 10.0.1.1 net 10.0.1.0/24", "router1:port0"},
		{"bridge bridge1 add port peer router1:port0", "bridge1:port1"},
		{"router router1 add port address 10.0.2.1 net 10.0.2.0/24", "router1:port1"},
		{"bridge bridge2 add port peer router1:port1", "bridge2:port1"},
		{"router router1 add route dst 10.0.1.0/24 port router1:port0", "router1:route0"},
		{"router router1 add route dst 10.0.2.0/24 port router1:port1", "router1:route1"},
		// The destination VM's address, so the router knows its MAC.
		{"bridge bridge2 add dhcp subnet 10.0.2.0/24 gw 10.0.2.1", "bridge bridge2 gw 10.0.2.1 server 10.0.2.1 subnet 10.0.2.0/24"},
		{"bridge bridge2 dhcp subnet 10.0.2.0/24 add host name vm2 mac 02:00:00:00:02:12 address 10.0.2.12", "name vm2 mac 02:00:00:00:02:12 address 10.0.2.12"},
	} {
		if got := strings.TrimSuffix(e.run(t, "-e", s.line), "\n"); got != s.want {
			t.Fatalf("%s:\n got %q\nwant %q", s.line, got, s.want)
		}
	}
	out := e.run(t, "-e", "trace port bridge1:port0 src 10.0.1.11 dst 10.0.2.12 proto tcp dst-port 22")
	t.Logf("trace:\n%s", out)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "packet ") || !strings.Contains(lines[0], "10.0.1.11 > 10.0.2.12") || !strings.Contains(lines[0], "tcp") {
		t.Errorf("header %q", lines[0])
	}
	for _, want := range []string{
		`(?m)^ingress +bridge1:port0: ingress port bridge1:port0 \(tap-left\)$`,
		`(?m)^bridge +left: `, // the bridge
		`(?m)^router +edge: route 10\.0\.2\.0/24 port router1:port1 `, // the router and its route
		`(?m)^egress +router1:port1: `,
		`(?m)^ *output +bridge2:port0: encapsulate \(vxlan key \d+\) to host host1 at 192\.168\.100\.202$`,
		`(?m)^verdict forward$`,
		`(?m)^action encap\(vxlan to 192\.168\.100\.202 host host1 key \d+\)$`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("trace lacks /%s/", want)
		}
	}
	if regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-`).MatchString(out) {
		t.Errorf("trace prints ids where aliases exist")
	}

	// -o json is the server's answer.
	out = e.run(t, "-o", "json", "-e", "trace in-port bridge1:port0 src 10.0.1.11 dst 10.0.2.12 proto tcp dst-port 22")
	var tr struct {
		Verdict string
		Steps   []struct{ Kind, Object, Message string }
	}
	if err := json.Unmarshal([]byte(out), &tr); err != nil || tr.Verdict != "forward" || len(tr.Steps) == 0 {
		t.Errorf("-o json: %v\n%s", err, out)
	}

	// A drop names its reason; the server's refusals are user errors.
	out = e.run(t, "-e", "trace port bridge1:port0 src 10.0.1.11 dst 10.9.9.9")
	if !strings.Contains(out, "\nverdict drop (") {
		t.Errorf("no route:\n%s", out)
	}
	for _, tc := range []struct{ line, stderr string }{
		{"trace port bridge1:port0 src 10.0.1.11 dst fd00::1", "User error: dst: src and dst are of different families\n"},
		{"trace port bridge1:port9 src 10.0.1.11 dst 10.0.2.12", "User error: there is no port port9 of bridge1 (there are 2: port0 to port1)\n"},
		{"trace port bridge1:port0 src 10.0.1.11", "User error: trace needs dst: trace port bridge0:port0 src 10.0.0.5 dst 10.0.1.5 [proto tcp dst-port 22 …]\n"},
	} {
		if _, errOut, code := e.nagare("", "-e", tc.line); code != 1 || errOut != tc.stderr {
			t.Errorf("%s: exit %d, stderr %q; want %q", tc.line, code, errOut, tc.stderr)
		}
	}
}

// datapath publishes a status for host0 the way its agent does and reads
// it back through the CLI; host1 has no agent publishing.
func (e *e2e) datapath(t *testing.T) {
	id := func(line string) string {
		var s string
		if err := json.Unmarshal([]byte(e.run(t, "-o", "json", "-e", line)), &s); err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		return s
	}
	host, left, right := id("host host0 show id"), id("show port bridge1:port0 id"), id("show port bridge0:port0 id")
	st := agentstatus.Datapath{
		HostID: host, HostName: "carlsberg", Datapath: "userspace", Updated: time.Now().UTC(),
		Flows: 2, Hits: 5120, Misses: 14, FlowsInstalled: 16, FlowsExpired: 14,
		VXLAN: agentstatus.Tunnel{RxPackets: 2600, TxPackets: 2590},
		Drops: map[string]uint64{"malformed-truncated": 3, "tunnel-unknown-key": 1},
		Ports: []agentstatus.Port{
			{PortID: left, Index: 1, Interface: "tap-left", RxPackets: 10, TxPackets: 9},
			{PortID: right, Index: 0, Interface: "leftdp", RxPackets: 2612, TxPackets: 2598, TxDropped: 2},
		},
		FlowDump: []string{
			"in_port(1:" + left + ") eth(02:00:00:00:01:11>02:0a:00:00:00:01 type 0x0800), class forward, packets 3, bytes 294, used 1s ago, actions encap(vxlan)",
			"in_port(0:" + right + ") eth(02:00:00:00:00:05>ff:ff:ff:ff:ff:ff type 0x0806), class forward, packets 1, bytes 42, used 2s ago, actions output(1:tap-left)",
		},
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.etcd().Put(ctx, nsdb.DatapathStatusKey(host), string(b)); err != nil {
		t.Fatal(err)
	}
	want := "datapath userspace host host0 flows 2 hits 5120 misses 14 lost 0 installed 16 expired 14 invalidated 0\n" +
		"port bridge0:port0 interface leftdp index 0 rx 2612 tx 2598 rx-drops 0 tx-drops 2\n" +
		"port bridge1:port0 interface tap-left index 1 rx 10 tx 9 rx-drops 0 tx-drops 0\n" +
		"tunnel vxlan rx 2600 tx 2590\n" +
		"tunnel gre rx 0 tx 0\n" +
		"drops malformed-truncated 3 tunnel-unknown-key 1\n"
	for _, line := range []string{"host host0 show datapath", "host host0 datapath show"} {
		if got := e.run(t, "-e", line); got != want {
			t.Errorf("%s:\n got %q\nwant %q", line, got, want)
		}
	}
	wantFlows := "in_port(1:bridge1:port0) eth(02:00:00:00:01:11>02:0a:00:00:00:01 type 0x0800), class forward, packets 3, bytes 294, used 1s ago, actions encap(vxlan)\n" +
		"in_port(0:bridge0:port0) eth(02:00:00:00:00:05>ff:ff:ff:ff:ff:ff type 0x0806), class forward, packets 1, bytes 42, used 2s ago, actions output(1:tap-left)\n"
	if got := e.run(t, "-e", "host host0 list flow"); got != wantFlows {
		t.Errorf("list flow:\n got %q\nwant %q", got, wantFlows)
	}
	var back agentstatus.Datapath
	if err := json.Unmarshal([]byte(e.run(t, "-o", "json", "-e", "host host0 show datapath")), &back); err != nil || back.Hits != 5120 || len(back.Ports) != 2 {
		t.Errorf("-o json: %v %+v", err, back)
	}
	if out, errOut, code := e.nagare("", "-e", "host host1 show datapath"); code != 1 || out != "" || errOut != "User error: host host1 has no running agent\n" {
		t.Errorf("no agent: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

// interactive drives the prompt in a tmux pane: a command, tab completion,
// an error that does not end the session, exit, and the history file.
func (e *e2e) interactive(t *testing.T) {
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux not installed")
	}
	home := t.TempDir()
	sock := filepath.Join(t.TempDir(), "tmux.sock")
	run := func(args ...string) string {
		out, err := exec.Command(tmux, append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("new-session", "-d", "-x", "200", "-y", "50",
		"env", "HOME="+home, "NAGARE_API="+e.api, "TERM=xterm", filepath.Join(e.bin, "nagare"))
	t.Cleanup(func() { _ = exec.Command(tmux, "-S", sock, "kill-server").Run() })
	waitFor := func(want string) string {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			screen := run("capture-pane", "-p")
			if strings.Contains(screen, want) {
				return screen
			}
			if time.Now().After(deadline) {
				t.Fatalf("screen never showed %q:\n%s", want, screen)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitFor("nagare>") // tmux trims trailing blanks
	run("send-keys", "list bridge", "Enter")
	waitFor("bridge bridge0 name internal state up")
	run("send-keys", "list tunn", "Tab")
	waitFor("nagare> list tunnel-zone")
	run("send-keys", "Enter")
	waitFor("tzone tzone0 name vxlan-tz type vxlan")
	run("send-keys", "list brdge", "Enter")
	waitFor("Syntax error at: brdge")
	run("send-keys", "exit", "Enter")
	deadline := time.Now().Add(10 * time.Second)
	for {
		hist, _ := os.ReadFile(filepath.Join(home, ".nagare_history"))
		if strings.Contains(string(hist), "list tunnel-zone") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history file: %q", hist)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// With the default --auth password, the CLI logs in like the openstack
// client (OS_USERNAME, OS_PASSWORD, OS_PROJECT_NAME) and a missing or wrong
// credential is a startup error naming what to set.
func TestAuthentication(t *testing.T) {
	e := startServer(t, "--auth", "password", "--admin-password", "s3cret")
	if _, errOut, code := e.nagare("", "-e", "list bridge"); code != 2 || !strings.Contains(errOut, "OS_USERNAME") {
		t.Fatalf("no credentials: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := e.nagare("", "--os-username", "admin", "--os-password", "wrong", "-e", "list bridge"); code != 2 || !strings.Contains(errOut, "401") {
		t.Fatalf("wrong password: exit %d, stderr %q", code, errOut)
	}
	if out, errOut, code := e.nagare("", "--os-username", "admin", "--os-password", "s3cret", "-e", "create bridge name authed", "-e", "list bridge"); code != 0 ||
		!strings.Contains(out, "bridge bridge0 name authed state up") {
		t.Fatalf("admin: exit %d\n%s\n%s", code, out, errOut)
	}
}

// The CLI logs in once and reuses the token across invocations: cached per
// user, project and API URL, owner-only; a cached token the server refuses
// is replaced by a password login.
func TestTokenCache(t *testing.T) {
	e := startServer(t, "--auth", "password", "--admin-password", "s3cret")
	home := t.TempDir()
	login := []string{"--os-username", "admin", "--os-password", "s3cret"}
	if out, errOut, code := e.nagareIn(home, "", append(login, "-e", "create bridge name cached")...); code != 0 {
		t.Fatalf("first command: exit %d\n%s\n%s", code, out, errOut)
	}
	files, err := filepath.Glob(filepath.Join(home, ".cache", "nagare", "tokens", "*.json"))
	if err != nil || len(files) != 1 {
		t.Fatalf("token cache after a login: %v %v", files, err)
	}
	fi, err := os.Stat(files[0])
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token cache file mode %v %v, want 0600", fi.Mode(), err)
	}
	var cached struct{ Token string }
	b, err := os.ReadFile(files[0])
	if err != nil || json.Unmarshal(b, &cached) != nil || cached.Token == "" {
		t.Fatalf("token cache content %q: %v", b, err)
	}
	// Without the password, the cached token still works: no new login.
	if out, errOut, code := e.nagareIn(home, "", "--os-username", "admin", "--os-password", "", "-e", "list bridge"); code != 0 ||
		!strings.Contains(out, "name cached") {
		t.Fatalf("with the cached token: exit %d\n%s\n%s", code, out, errOut)
	}
	if b2, _ := os.ReadFile(files[0]); string(b2) != string(b) {
		t.Fatal("the cache was rewritten although its token was valid")
	}
	// --no-token-cache logs in with the password and leaves the cache alone.
	if _, _, code := e.nagareIn(home, "", "--no-token-cache", "--os-username", "admin", "--os-password", "", "-e", "list bridge"); code != 2 {
		t.Fatalf("--no-token-cache without a password: exit %d, want 2", code)
	}
	// A token the server refuses is forgotten and the password used again.
	bad, _ := json.Marshal(map[string]any{"api": e.api, "user": "admin", "project": "admin", "token": "not-a-token",
		"expires_at": time.Now().Add(time.Hour)})
	if err := os.WriteFile(files[0], bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := e.nagareIn(home, "", append(login, "-e", "list bridge")...); code != 0 || !strings.Contains(out, "name cached") {
		t.Fatalf("with a refused cached token: exit %d\n%s\n%s", code, out, errOut)
	}
	if b3, _ := os.ReadFile(files[0]); strings.Contains(string(b3), "not-a-token") {
		t.Fatal("the refused token is still cached")
	}
	// Another user's cache is not this one's.
	if _, errOut, code := e.nagareIn(home, "", "--os-username", "alice", "--os-password", "", "-e", "list bridge"); code != 2 {
		t.Fatalf("another user reused admin's token: exit %d %s", code, errOut)
	}
}
