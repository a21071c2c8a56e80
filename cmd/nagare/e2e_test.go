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

func startServer(t *testing.T) *e2e {
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
		resp, err := http.Get(e.api + "/api/v1/hosts")
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

// registerHost creates a host through the API and makes it alive the way
// an agent does: by holding an etcd lease on its liveness key.
func (e *e2e) registerHost(name string) {
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
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.etcdURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := cli.Grant(ctx, 300)
	if err != nil {
		t.Fatal(err)
	}
	if err := nsdb.New(cli).SetHostAlive(ctx, h.ID, lease.ID); err != nil {
		t.Fatal(err)
	}
}

// nagare runs the CLI with args and stdin, returning stdout, stderr and
// the exit status.
func (e *e2e) nagare(stdin string, args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(e.bin, "nagare"), args...)
	cmd.Env = append(os.Environ(), "NAGARE_API="+e.api, "HOME="+e.t.TempDir())
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

	t.Run("interactive", func(t *testing.T) { e.interactive(t) })
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
