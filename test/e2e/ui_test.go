//go:build linux

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestDashboard drives the dashboard in a real browser (Debian's chromium,
// headless) against a real server and agents: log in through the form, see
// the topology drawn, open a host's datapath, trace a packet and see its
// path, watch a killed host turn red within its lease, see a form's bad
// input answered with the API's own message, and see a network named with
// markup drawn as text. With NAGARE_SCREENSHOTS=dir (make screenshots) it
// writes a picture of each page there.
func TestDashboard(t *testing.T) {
	harness.Require(t, "chromium")
	const password = "s3cret-dashboard"
	tp := newTopologyWith(t, harness.Options{AdminPassword: password})
	// Some traffic, so the agents learn the VMs' MACs and the graphs move.
	for _, pair := range [][2]string{{"vm11", "10.0.2.12"}, {"vm12", "10.0.2.11"}, {"vm21", "10.0.1.12"}} {
		tp.vm[pair[0]].WaitPing(t, pair[1], 15*time.Second)
	}
	pings := tp.vm["vm11"].Background(t, "ping", "-i", "0.2", "10.0.2.12")
	defer pings.Stop()
	hv1, hv2 := tp.Hosts[0], tp.Hosts[1]

	b := newBrowser(t)
	ui := tp.API + "/ui/"

	// Log in: no token, so the login page.
	b.do(chromedp.Navigate(ui))
	b.waitFor("the login page", `document.getElementById('login-form')`, `document.body.innerText`, 10*time.Second)
	b.screenshot("login")
	b.setValue("login-password", "wrong")
	b.do(chromedp.Click(chromedp.ID("login-submit")))
	b.waitFor("a wrong password refused", `!document.getElementById('login-error').hidden`, `document.body.innerText`, 10*time.Second)
	b.setValue("login-user", "admin")
	b.setValue("login-password", password)
	b.setValue("login-project", "admin")
	b.do(chromedp.Click(chromedp.ID("login-submit")))

	// The demo topology, drawn: the router, both networks, the four VMs'
	// ports and both hosts, alive.
	labels := `[...document.querySelectorAll('svg.topo .node')].map(g => g.dataset.kind + ':' + g.querySelector('.label').textContent + (g.classList.contains('dead') ? ':dead' : ''))`
	want := []string{"router:r", "bridge:net1", "bridge:net2", "port:tap-vm11", "port:tap-vm12", "port:tap-vm21", "port:tap-vm22", "host:hv1", "host:hv2"}
	quoted, _ := json.Marshal(want)
	b.waitFor("the topology drawn", fmt.Sprintf(`(() => { const have = %s; return %s.every(w => have.includes(w)); })()`, labels, quoted), labels, 15*time.Second)
	if st := eval[string](b, `document.getElementById('live-status').textContent`); st != "live" {
		t.Errorf("the live indicator says %q", st)
	}
	// Names are SVG text: a screen reader reads each node's label and
	// the browser's find finds it.
	if n := eval[int](b, `[...document.querySelectorAll('svg.topo .node[role=button][aria-label]')].length`); n < len(want) {
		t.Errorf("only %d nodes are labelled for assistive technology", n)
	}
	b.screenshot("topology")

	// Click a network: its details.
	b.do(chromedp.Click(chromedp.CSS(`svg.topo .node-bridge[data-key^="bridge/"]`)))
	b.waitFor("details of a network", `document.querySelector('#details .details-title') && document.querySelector('#details').innerText.includes('10.0.1.0/24')`, `document.querySelector('#details').innerText`, 10*time.Second)

	// Search: an address finds its port.
	b.setValue("search", "10.0.2.1")
	b.waitFor("search highlights", `document.querySelectorAll('svg.topo .node.match').length > 0`, `document.getElementById('search-count').textContent`, 5*time.Second)
	b.setValue("search", "")

	// A host's datapath: graphs from the agent's counters.
	if os.Getenv("NAGARE_SCREENSHOTS") != "" {
		time.Sleep(30 * time.Second) // a picture of graphs with a history
	}
	b.do(chromedp.Navigate(ui + "#/hosts/" + hv1.ID))
	b.waitFor("hv1's datapath graphs", `document.querySelectorAll('.host-page svg.chart polyline').length >= 2 && document.body.innerText.includes('Ports')`,
		`document.body.innerText.slice(0, 400)`, 20*time.Second)
	b.screenshot("host")

	// Trace: vm11 → vm22:22 across the router; the page prints the
	// simulation's own steps and draws the path through the port of vm11,
	// net1, the router, net2 and vm22's port.
	vm11Port, vm22Port := tp.portID(t, tp.port["vm11"]), tp.portID(t, tp.port["vm22"])
	b.do(chromedp.Navigate(ui + "#/trace?port=" + vm11Port))
	b.waitFor("the trace form", `document.getElementById('trace-port') && document.getElementById('trace-port').value === `+jsString(vm11Port), `document.getElementById('trace-port').value`, 10*time.Second)
	b.setValue("trace-src", "10.0.1.11")
	b.setValue("trace-dst", "10.0.2.12")
	b.setValue("trace-proto", "tcp")
	b.setValue("trace-sport", "40000")
	b.setValue("trace-dport", "22")
	b.do(chromedp.Click(chromedp.ID("trace-submit")))
	b.waitFor("the trace's steps", `document.getElementById('trace-verdict')`, `document.getElementById('trace-result').innerText`, 10*time.Second)
	var api struct {
		Verdict string
		Steps   []struct{ Kind, Message string }
	}
	if err := tp.Call("POST", "/api/v1/trace", map[string]any{"in_port_id": vm11Port, "src": "10.0.1.11", "dst": "10.0.2.12", "proto": "tcp", "src_port": 40000, "dst_port": 22}, &api); err != nil {
		t.Fatal(err)
	}
	page := eval[string](b, `document.getElementById('trace-result').innerText`)
	if !strings.Contains(page, "verdict "+api.Verdict) {
		t.Errorf("the page's verdict is not the API's %q:\n%s", api.Verdict, page)
	}
	for _, st := range api.Steps {
		if !strings.Contains(page, st.Message) {
			t.Errorf("the page lacks the step %q (%s):\n%s", st.Message, st.Kind, page)
		}
	}
	onPath := eval[[]string](b, `[...document.querySelectorAll('svg.topo .node.on-path')].map(g => g.dataset.key)`)
	for _, key := range []string{"port/" + vm11Port, "router/", "bridge/", "port/" + vm22Port, "host/" + hv2.ID} {
		if !containsPrefix(onPath, key) {
			t.Errorf("the path drawn (%v) does not cross %s", onPath, key)
		}
	}
	if n := eval[int](b, `document.querySelectorAll('svg.topo .hops .hop').length`); n < 5 {
		t.Errorf("the path has %d numbered hops", n)
	}
	// Step by step: back to the first step, only the ingress port lit.
	b.do(chromedp.Click(chromedp.CSS(`#trace-steps li:first-child`)))
	if lit := eval[[]string](b, `[...document.querySelectorAll('svg.topo .node.on-path')].map(g => g.dataset.key)`); len(lit) != 1 || lit[0] != "port/"+vm11Port {
		t.Errorf("at the first step the path lights %v, want only vm11's port", lit)
	}
	b.do(chromedp.Click(chromedp.ID("trace-next")), chromedp.Click(chromedp.CSS(`.step-controls button:last-child`)))
	b.screenshot("trace")

	// A form's bad input: the API's own message, and nothing left behind.
	b.do(chromedp.Navigate(ui + "#/edit"))
	b.waitFor("the forms", `document.getElementById('form-network')`, "", 10*time.Second)
	b.setValue("net-name", "ui-bad-net")
	b.setValue("net-cidr", "10.9.0.0/33")
	b.do(chromedp.Click(chromedp.ID("form-network-submit")))
	b.waitFor("the form's error", `!document.getElementById('form-network-error').hidden`, `document.getElementById('form-network').innerText`, 10*time.Second)
	shown := eval[string](b, `document.querySelector('#form-network-error .api-message').textContent`)
	var net struct{ Network struct{ ID string } }
	if err := tp.Call("POST", "/v2.0/networks", map[string]any{"network": map[string]any{"name": "probe"}}, &net); err != nil {
		t.Fatal(err)
	}
	err := tp.Call("POST", "/v2.0/subnets", map[string]any{"subnet": map[string]any{"network_id": net.Network.ID, "ip_version": 4, "cidr": "10.9.0.0/33"}}, nil)
	var he *harness.HTTPError
	if !errors.As(err, &he) || he.Status != 400 {
		t.Fatalf("the API took a /33: %v", err)
	}
	var ne struct{ NeutronError struct{ Message string } }
	if json.Unmarshal([]byte(he.Body), &ne) != nil || ne.NeutronError.Message == "" || shown != ne.NeutronError.Message {
		t.Errorf("the form shows %q, the API says %s", shown, he.Body)
	}
	if err := tp.Call("DELETE", "/v2.0/networks/"+net.Network.ID, nil, nil); err != nil {
		t.Fatal(err)
	}
	var nets struct{ Networks []struct{ Name string } }
	if err := tp.Call("GET", "/v2.0/networks?name=ui-bad-net", nil, &nets); err != nil || len(nets.Networks) != 0 {
		t.Errorf("the refused form left networks behind: %v %v", nets.Networks, err)
	}
	b.screenshot("edit")

	// A host killed turns red within its lease (3 s): the agent's lease
	// expires in etcd, the watch tells the server, the stream tells the page.
	b.do(chromedp.Navigate(ui + "#/topology"))
	hostNode := `document.querySelector('svg.topo .node-host[data-id=` + jsString(hv2.ID) + `]')`
	b.waitFor("hv2 drawn alive", hostNode+` && `+hostNode+`.classList.contains('alive')`, "", 10*time.Second)
	killed := time.Now()
	hv2.KillAgent()
	b.waitFor("hv2 drawn dead", hostNode+`.classList.contains('dead')`, hostNode+`.getAttribute('class')`, 15*time.Second)
	t.Logf("hv2 turned red %v after its agent was killed (lease 3 s)", time.Since(killed).Round(10*time.Millisecond))
	if fill := eval[string](b, `getComputedStyle(`+hostNode+`.querySelector('.shape')).stroke`); fill != "rgb(220, 38, 38)" {
		t.Errorf("a dead host is drawn with stroke %s, want red", fill)
	}
	b.screenshot("host-down")

	// Markup in a name is text: no script runs, no element is made.
	evil := `<script>alert(1)</script><img src=x onerror=alert(2)>`
	var br map[string]any
	if err := tp.Call("POST", "/api/v1/bridges", map[string]any{"name": evil}, &br); err != nil {
		t.Fatal(err)
	}
	bridgeNode := `document.querySelector('svg.topo .node-bridge[data-id=` + jsString(br["id"].(string)) + `]')`
	b.waitFor("the bridge named with markup", bridgeNode, "", 10*time.Second)
	if title := eval[string](b, bridgeNode+`.querySelector('title').textContent`); !strings.Contains(title, evil) {
		t.Errorf("the node's title is %q, want the name as text", title)
	}
	b.do(chromedp.Click(chromedp.CSS(`svg.topo .node-bridge[data-id="` + br["id"].(string) + `"]`)))
	b.waitFor("its details", `document.querySelector('#details .details-title') && document.querySelector('#details .details-title').textContent.includes('<script>')`, `document.querySelector('#details').innerText`, 10*time.Second)
	if n := eval[int](b, `document.querySelectorAll('img, #app script, svg script').length`); n != 0 {
		t.Errorf("the name became %d elements", n)
	}

	// Log out: back to the login page, and the token no longer works.
	tok := eval[string](b, `sessionStorage.getItem('nagare.token')`)
	b.do(chromedp.Click(chromedp.ID("logout")))
	b.waitFor("the login page after logging out", `document.getElementById('login-form')`, "", 10*time.Second)
	if left := eval[string](b, `sessionStorage.getItem('nagare.token') || ''`); left != "" {
		t.Errorf("the token stays in the page after logging out")
	}
	if cookies := eval[string](b, `document.cookie`); cookies != "" {
		t.Errorf("the page set cookies: %q", cookies)
	}
	err = harness.Eventually(5*time.Second, func() error {
		req, _ := http.NewRequest("GET", tp.API+"/ui/api/whoami", nil)
		req.Header.Set("X-Auth-Token", tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			return fmt.Errorf("the logged-out token still answers %s", resp.Status)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

func containsPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}
