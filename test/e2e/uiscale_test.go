//go:build linux

package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestDashboardAtScale: 500 ports in 20 networks behind one router, bound
// across a rack of hosts, stay readable: networks start collapsed, a
// search finds a port inside one and opens it, and with everything
// expanded no two nodes overlap. How long drawing takes is logged (a
// measurement, not a pass mark).
func TestDashboardAtScale(t *testing.T) {
	harness.Require(t, "chromium")
	const password = "s3cret-scale"
	env := harness.New(t, harness.Options{Hypervisors: 1, AdminPassword: password})
	type obj struct {
		ID string `json:"id"`
	}
	create := func(path string, body map[string]any) string {
		t.Helper()
		var o obj
		if err := env.Call("POST", path, body, &o); err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	// A rack of hypervisors whose agents are not running here: the
	// picture shows them down, which is what it would show.
	var hosts []string
	for i := 1; i <= 8; i++ {
		hosts = append(hosts, create("/api/v1/hosts", map[string]any{"name": fmt.Sprintf("rack1-hv%02d", i)}))
	}
	router := create("/api/v1/routers", map[string]any{"name": "edge"})
	const networks, perNetwork = 20, 25
	var needle string
	for n := range networks {
		bridge := create("/api/v1/bridges", map[string]any{"name": fmt.Sprintf("tenant-%02d", n)})
		rp := create("/api/v1/ports", map[string]any{"router_id": router, "address": fmt.Sprintf("10.%d.0.1", n), "network": fmt.Sprintf("10.%d.0.0/24", n)})
		create("/api/v1/ports", map[string]any{"bridge_id": bridge, "peer_id": rp})
		for i := range perNetwork {
			id := create("/api/v1/ports", map[string]any{"bridge_id": bridge, "host_id": hosts[(n*perNetwork+i)%len(hosts)], "interface_name": fmt.Sprintf("tap-%d-%d", n, i)})
			if n == 13 && i == 7 {
				needle = id
			}
		}
	}

	b := newBrowser(t)
	ui := env.API + "/ui/"
	b.do(chromedp.Navigate(ui))
	b.waitFor("the login page", `document.getElementById('login-form')`, "", 10*time.Second)
	b.setValue("login-password", password)
	start := time.Now()
	b.do(chromedp.Click(chromedp.ID("login-submit")))
	b.waitFor("20 collapsed networks", `document.querySelectorAll('svg.topo .node-agg').length === 20`,
		`document.querySelectorAll('svg.topo .node').length`, 30*time.Second)
	t.Logf("login to the picture of %d ports: %v", networks*perNetwork, time.Since(start).Round(time.Millisecond))
	if n := eval[int](b, `document.querySelectorAll('svg.topo .node-port').length`); n != 0 {
		t.Errorf("%d port nodes drawn while every network is collapsed", n)
	}
	if n := eval[int](b, `document.querySelectorAll('svg.topo .node-host').length`); n != 9 {
		t.Errorf("%d hosts drawn, want 9", n)
	}
	b.screenshot("scale")

	// Search finds a port inside a collapsed network and opens it there.
	b.setValue("search", "tap-13-7")
	b.do(chromedp.SendKeys(chromedp.ID("search"), "\r"))
	b.waitFor("the port found and selected", `document.querySelector('svg.topo .node.selected[data-key="port/`+needle+`"]')`,
		`document.getElementById('search-count').textContent`, 10*time.Second)
	if n := eval[int](b, `document.querySelectorAll('svg.topo .node-port').length`); n != perNetwork {
		t.Errorf("opening the port's network drew %d ports, want %d", n, perNetwork)
	}
	b.screenshot("scale-search")

	// Everything expanded: 500 ports, none on top of another.
	start = time.Now()
	b.do(chromedp.Click(chromedp.CSS(`.toolbar button:nth-of-type(2)`)))
	b.waitFor("every port drawn", `document.querySelectorAll('svg.topo .node-port').length === 500`,
		`document.querySelectorAll('svg.topo .node-port').length`, 30*time.Second)
	t.Logf("expanding all %d ports: %v", networks*perNetwork, time.Since(start).Round(time.Millisecond))
	overlaps := eval[[]string](b, `(() => {
		const boxes = [...document.querySelectorAll('svg.topo .node')].map(g => {
			const m = /translate\(([-\d.e]+),([-\d.e]+)\)/.exec(g.getAttribute('transform'));
			const r = g.querySelector('.shape');
			return {k: g.dataset.key, x: +m[1], y: +m[2], w: +r.getAttribute('width'), h: +r.getAttribute('height')};
		});
		const out = [];
		for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
			const a = boxes[i], c = boxes[j];
			if (a.x < c.x + c.w && c.x < a.x + a.w && a.y < c.y + c.h && c.y < a.y + a.h) out.push(a.k + ' ' + c.k);
		}
		return out.slice(0, 10);
	})()`)
	if len(overlaps) > 0 {
		t.Errorf("nodes overlap: %v", overlaps)
	}
}
