//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestBGPPassword: a session signed with TCP MD5 (RFC 2385) against FRR
// configured with `neighbor … password`. With a wrong password the
// session never comes up (the segments are dropped by the kernels); set
// right through the CLI, it comes up and the VM's traffic crosses the
// uplink. The password never shows in what the API returns.
func TestBGPPassword(t *testing.T) {
	harness.Require(t, "vtysh")
	const key = "e2e-md5-Key_9"
	u := newOneUplink(t, " neighbor 192.168.41.2 password "+key+"\n", "password wrong-key")
	// Long enough for several connection attempts from both ends.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := u.established(); err == nil {
			t.Fatal("the session came up with a wrong password")
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out := u.env.MustCLI(t, "router router0 list bgp-peer"); !strings.Contains(out, "status ") || strings.Contains(out, "wrong-key") {
		t.Errorf("the peer with a wrong password:\n%s", out)
	}

	u.env.MustCLI(t, "%s set password %s", u.peer, key)
	start := time.Now()
	if err := harness.Eventually(20*time.Second, u.established); err != nil {
		sum, _ := u.frr.Vtysh("show bgp summary")
		t.Fatalf("with the right password: %v\n%s", err, sum)
	}
	t.Logf("session signed with TCP MD5 established %.1f s after the password was set right", time.Since(start).Seconds())
	u.vm.WaitPing(t, serverAddr, 20*time.Second)
	out, err := u.frr.Vtysh("show bgp neighbors 192.168.41.2")
	if err != nil || !strings.Contains(out, "BGP state = Established") {
		t.Errorf("r1: %v\n%s", err, out)
	}
	for _, cmd := range []string{"router router0 list bgp-peer", u.peer + " show"} {
		if out := u.env.MustCLI(t, "%s", cmd); strings.Contains(out, key) || strings.Contains(out, "password") {
			t.Errorf("%s shows the password:\n%s", cmd, out)
		}
	}
	var raw []map[string]any
	if err := u.env.Call("GET", "/api/v1/bgp-peers", nil, &raw); err != nil || len(raw) != 1 || strings.Contains(fmt.Sprint(raw), key) {
		t.Errorf("GET /api/v1/bgp-peers: %v %v", err, raw)
	}
}
