//go:build linux

package acceptance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/external"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/provider"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/test/e2e/harness"
)

// suite is the gophercloud module whose acceptance tests run, at the
// version go.mod requires (its source is in the module cache).
const (
	suiteModule = "github.com/gophercloud/gophercloud/v2"
	suitePkgs   = "./internal/acceptance/openstack/networking/v2/..."
)

// expectedSkips are the tests gophercloud's suite skips against Neutron
// with ML2/OVN too, for reasons outside the API, keyed by package (after
// networking/v2) and test name.
var expectedSkips = map[string]string{
	"/extensions/agents.TestAgentsCRUD":             "skipped unconditionally by the suite (\"needs to be re-worked to work with both ML2/OVS and OVN\")",
	"/extensions/layer3.TestLayer3RouterAgents":     "skipped unconditionally by the suite (\"needs to be re-worked to work with both ML2/OVS and OVN\")",
	"/extensions/dns.TestDNSFloatingIPCRUD":         "skipped unconditionally by the suite (\"doesn't work with ML2/OVN\")",
	"/extensions/vpnaas.TestServiceCRUD":            "the suite runs it only against releases up to stable/wallaby (OS_BRANCH=master); it runs again below as against stable/wallaby",
	"/extensions/vpnaas.TestConnectionCRUD":         "the suite runs it only against releases up to stable/wallaby (OS_BRANCH=master); it runs again below as against stable/wallaby",
	"/extensions/layer3.TestLayer3RouterScheduling": "no l3_agent_scheduler extension: routers are distributed (every agent simulates them) and no L3 agent hosts them, as with ML2/OVN",
}

// result is one top-level test of the suite.
type result struct {
	pkg, name, action string
	output            strings.Builder
}

// TestGophercloudNetworking runs gophercloud's networking acceptance suite,
// unmodified, against a real nagare-server (password authentication) with
// one agent, and fails on every failure and every unexpected skip.
func TestGophercloudNetworking(t *testing.T) {
	harness.Require(t)
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	src := suiteSource(t, goBin)
	work := filepath.Join(t.TempDir(), "gophercloud")
	if out, err := exec.Command("cp", "-r", src, work).CombinedOutput(); err != nil {
		t.Fatalf("copy %s: %v\n%s", src, err, out)
	}
	if out, err := exec.Command("chmod", "-R", "u+w", work).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}

	const password = "acceptance-admin-secret"
	env := harness.New(t, harness.Options{Hypervisors: 1, AdminPassword: password})
	extID := externalNetwork(t, env, password)

	osEnv := []string{
		"OS_AUTH_URL=" + env.IdentityURL(), "OS_USERNAME=admin", "OS_PASSWORD=" + password,
		"OS_PROJECT_NAME=admin", "OS_DOMAIN_NAME=Default", "OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default",
		"OS_POOL_NAME=public", "OS_EXTGW_ID=" + extID,
		// Compute choices the suite's helper insists on; no networking
		// test uses them.
		"OS_IMAGE_ID=unused", "OS_FLAVOR_ID=unused-1", "OS_FLAVOR_ID_RESIZE=unused-2",
		"GOFLAGS=-mod=mod", "GOPROXY=off", "GOWORK=off", "GOTOOLCHAIN=local",
	}
	results := runSuite(t, goBin, work, append(slices.Clone(osEnv), "OS_BRANCH=master"), os.Getenv("NAGARE_ACCEPTANCE_RUN"), suitePkgs)
	counts := map[string]int{}
	var skipped []string
	for _, r := range results {
		counts[r.action]++
		key := r.pkg + "." + r.name
		switch r.action {
		case "fail":
			t.Errorf("FAIL %s\n%s", key, r.output.String())
		case "skip":
			reason := skipReason(r.output.String())
			if why, ok := expectedSkips[key]; ok {
				skipped = append(skipped, fmt.Sprintf("  %s: %s", key, why))
			} else {
				t.Errorf("unexpected SKIP %s: %s", key, reason)
			}
		}
	}
	sort.Strings(skipped)
	t.Logf("gophercloud %s networking acceptance suite against Nagare: %d passed, %d failed, %d skipped\nexpected skips:\n%s",
		suiteModule, counts["pass"], counts["fail"], counts["skip"], strings.Join(skipped, "\n"))

	// The VPN tests the suite keeps for clouds up to stable/wallaby run
	// again as if against one: the API they use is the same today.
	if run := os.Getenv("NAGARE_ACCEPTANCE_RUN"); run == "" || strings.Contains(run, "VPN") {
		wallaby := append(slices.Clone(osEnv), "OS_BRANCH=stable/wallaby")
		for _, r := range runSuite(t, goBin, work, wallaby, "^(TestServiceCRUD|TestConnectionCRUD)$", suitePkgs[:strings.LastIndex(suitePkgs, "/")]+"/extensions/vpnaas") {
			if r.action != "pass" {
				t.Errorf("%s %s.%s with OS_BRANCH=stable/wallaby\n%s", strings.ToUpper(r.action), r.pkg, r.name, r.output.String())
			} else {
				t.Logf("%s.%s passes with OS_BRANCH=stable/wallaby", r.pkg, r.name)
			}
		}
	}
}

// runSuite runs packages of the suite (-run run, if given) and returns
// their top-level tests' results.
func runSuite(t *testing.T, goBin, work string, osEnv []string, run, pkgs string) []*result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	args := []string{"test", "-tags", "acceptance", "-json", "-count=1", "-timeout", "15m"}
	if run != "" {
		args = append(args, "-run", run) // a part of the suite, while working on it
	}
	cmd := exec.CommandContext(ctx, goBin, append(args, pkgs)...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), osEnv...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	results, builds := parseEvents(out)
	if len(results) == 0 {
		t.Fatalf("the suite ran no test: %v\n%s\n%s", runErr, stderr.String(), builds)
	}
	if builds != "" {
		t.Errorf("packages of the suite failed outside any test:\n%s", builds)
	}
	return results
}

// suiteSource is the directory of the gophercloud module in the module
// cache.
func suiteSource(t *testing.T, goBin string) string {
	t.Helper()
	cmd := exec.Command(goBin, "list", "-m", "-f", "{{.Dir}}", suiteModule)
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOPROXY=off")
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Fatalf("%s is not in the module cache (go mod download): %v", suiteModule, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "internal", "acceptance")); err != nil {
		t.Fatalf("%s has no acceptance suite: %v", dir, err)
	}
	return dir
}

// externalNetwork creates what the suite expects of a cloud: an external
// network (OS_EXTGW_ID, named as OS_POOL_NAME) with an IPv4 subnet.
func externalNetwork(t *testing.T, env *harness.Env, password string) string {
	t.Helper()
	ctx := context.Background()
	_, nc := env.Neutron(ctx, t, "admin", password, "admin")
	yes := true
	n, err := networks.Create(ctx, nc, provider.CreateOptsExt{
		CreateOptsBuilder: external.CreateOptsExt{CreateOptsBuilder: networks.CreateOpts{Name: "public"}, External: &yes},
		Segments:          []provider.Segment{{NetworkType: "flat", PhysicalNetwork: "physnet1"}},
	}).Extract()
	if err != nil {
		t.Fatalf("external network: %v", err)
	}
	gw, no := "172.24.4.1", false
	_, err = subnets.Create(ctx, nc, subnets.CreateOpts{NetworkID: n.ID, Name: "public-v4", IPVersion: 4, CIDR: "172.24.4.0/24",
		GatewayIP: &gw, EnableDHCP: &no, AllocationPools: []subnets.AllocationPool{{Start: "172.24.4.10", End: "172.24.4.250"}}}).Extract()
	if err != nil {
		t.Fatalf("external subnet: %v", err)
	}
	return n.ID
}

// parseEvents reads go test -json output into the top-level tests'
// results (package relative to networking/v2), and the output of packages
// that failed without a failing test (build errors).
func parseEvents(out []byte) ([]*result, string) {
	byKey := map[string]*result{}
	var order []*result
	pkgOut := map[string]*strings.Builder{}
	pkgFailed := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e struct {
			Action, Package, Test, Output string
		}
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		pkg := e.Package
		if i := strings.Index(pkg, "networking/v2"); i >= 0 {
			pkg = pkg[i+len("networking/v2"):]
		}
		if e.Test == "" {
			if e.Action == "output" {
				if pkgOut[pkg] == nil {
					pkgOut[pkg] = &strings.Builder{}
				}
				pkgOut[pkg].WriteString(e.Output)
			}
			if e.Action == "fail" {
				pkgFailed[pkg] = true
			}
			continue
		}
		top, _, _ := strings.Cut(e.Test, "/")
		key := pkg + "." + top
		r := byKey[key]
		if r == nil {
			r = &result{pkg: pkg, name: top}
			byKey[key] = r
			order = append(order, r)
		}
		switch e.Action {
		case "output":
			r.output.WriteString(e.Output)
		case "pass", "fail", "skip":
			if e.Test == top {
				r.action = e.Action
			}
		}
	}
	var builds strings.Builder
	for pkg, failed := range pkgFailed {
		anyFailed := false
		for _, r := range order {
			anyFailed = anyFailed || (r.pkg == pkg && r.action == "fail")
		}
		if failed && !anyFailed && pkgOut[pkg] != nil {
			fmt.Fprintf(&builds, "%s:\n%s\n", pkg, pkgOut[pkg].String())
		}
	}
	return order, builds.String()
}

// skipReason is the line of a skipped test's output that says why.
func skipReason(out string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "skip") || strings.Contains(line, "Skip") || strings.Contains(line, "requires") {
			return strings.TrimSpace(line)
		}
	}
	return strings.TrimSpace(out)
}
