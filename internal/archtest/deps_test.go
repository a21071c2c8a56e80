// Package archtest checks the dependency rules that keep the layout honest.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

// Only nagare-server may link etcd's server (its embedded NSDB): the agent
// and the CLI must stay small and must not be able to start an etcd. Pure
// packages (model, packet, flow, sim) must not depend on I/O packages, and
// a datapath must not depend on the simulator or the topology model.
func TestDependencyRules(t *testing.T) {
	rules := []struct {
		pkg       string
		forbidden []string
	}{
		{"github.com/nagare/nagare/cmd/nagare-agent", []string{"go.etcd.io/etcd/server/"}},
		{"github.com/nagare/nagare/cmd/nagare", []string{"go.etcd.io/etcd/server/", "go.etcd.io/etcd/client/"}},
		{"github.com/nagare/nagare/pkg/model", []string{"go.etcd.io/", "net/http", "github.com/nagare/nagare/pkg/nsdb"}},
		{"github.com/nagare/nagare/pkg/packet", []string{"go.etcd.io/", "net/http", "github.com/nagare/nagare/pkg/model"}},
		{"github.com/nagare/nagare/pkg/sim", []string{"go.etcd.io/", "net/http", "github.com/nagare/nagare/pkg/nsdb", "github.com/nagare/nagare/pkg/datapath"}},
		// Offload logic is pure (a guest's metadata in, frames out): no
		// sockets, no datapath.
		{"github.com/nagare/nagare/pkg/offload", []string{"go.etcd.io/", "net/http", "os/exec", "golang.org/x/sys/unix", "github.com/nagare/nagare/pkg/datapath", "github.com/nagare/nagare/pkg/model"}},
		{"github.com/nagare/nagare/pkg/flow", []string{"go.etcd.io/", "net/http", "os/exec", "github.com/nagare/nagare/pkg/model", "github.com/nagare/nagare/pkg/sim", "github.com/nagare/nagare/pkg/datapath"}},
		// Every datapath speaks pkg/flow's vocabulary and links neither the
		// simulator nor the topology model nor the NSDB.
		{"github.com/nagare/nagare/pkg/datapath/...", []string{"go.etcd.io/", "github.com/nagare/nagare/pkg/sim", "github.com/nagare/nagare/pkg/model", "github.com/nagare/nagare/pkg/nsdb", "github.com/nagare/nagare/pkg/agent"}},
		// What agents publish is plain data the CLI decodes: no etcd.
		{"github.com/nagare/nagare/pkg/agentstatus", []string{"go.etcd.io/", "net/http", "github.com/nagare/nagare/pkg/nsdb"}},
		{"github.com/nagare/nagare/pkg/flowstate", []string{"go.etcd.io/", "net/http", "github.com/nagare/nagare/pkg/nsdb", "github.com/nagare/nagare/pkg/datapath", "github.com/nagare/nagare/pkg/sim", "github.com/nagare/nagare/pkg/model"}},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-deps", r.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", r.pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range r.forbidden {
				if strings.HasPrefix(dep, f) || dep == strings.TrimSuffix(f, "/") {
					t.Errorf("%s depends on %s (forbidden: %s)", r.pkg, dep, f)
				}
			}
		}
	}
}

// The OpenStack APIs, and the agents' (join, host claims), are layered
// one way. The domain packages (neutron, identity, join, hostclaim) hold resources, validation, policy, IPAM, translation and
// tokens and speak typed requests and classed errors: they import no
// net/http (not even a client: the external-Keystone validator speaks
// HTTP, so it lives in pkg/api/identity) and nothing of the APIs or the
// server. The HTTP packages (pkg/api/neutron, pkg/api/identity) route,
// decode bodies, render views and map error classes to statuses: they
// reach the NSDB only through the domain's service. Imports are checked
// directly, not with -deps: the domain reaches net/http through the etcd
// client, which is the NSDB's business, not its own.
func TestAPILayering(t *testing.T) {
	const nagare = "github.com/nagare/nagare/"
	rules := []struct {
		pkg       string
		forbidden []string // direct imports: a path, or a prefix ending in /
	}{
		{nagare + "pkg/neutron", []string{"net/http", "net/http/", nagare + "pkg/api/", nagare + "pkg/server"}},
		{nagare + "pkg/identity", []string{"net/http", "net/http/", nagare + "pkg/api/", nagare + "pkg/server"}},
		{nagare + "pkg/api/neutron", []string{nagare + "pkg/nsdb", "go.etcd.io/"}},
		{nagare + "pkg/api/identity", []string{nagare + "pkg/nsdb", "go.etcd.io/"}},
		// Agent identity and host claims: the same split.
		{nagare + "pkg/join", []string{"net/http", "net/http/", nagare + "pkg/api/", nagare + "pkg/server"}},
		{nagare + "pkg/hostclaim", []string{"net/http", "net/http/", nagare + "pkg/api/", nagare + "pkg/server", nagare + "pkg/agent/"}},
		{nagare + "pkg/api/join", []string{nagare + "pkg/nsdb", "go.etcd.io/"}},
	}
	for _, r := range rules {
		out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, r.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list %s: %v\n%s", r.pkg, err, out)
		}
		imports := strings.Fields(string(out))
		if len(imports) == 0 {
			t.Fatalf("go list %s: no imports listed, the rule would check nothing", r.pkg)
		}
		for _, imp := range imports {
			for _, f := range r.forbidden {
				if imp == f || (strings.HasSuffix(f, "/") && strings.HasPrefix(imp, f)) {
					t.Errorf("%s imports %s (forbidden: %s)", r.pkg, imp, f)
				}
			}
		}
		// Transitively, the domain must not reach the APIs or the server
		// either (through some helper package).
		if !strings.Contains(r.pkg, "/pkg/api/") {
			deps, err := exec.Command("go", "list", "-deps", r.pkg).CombinedOutput()
			if err != nil {
				t.Fatalf("go list -deps %s: %v\n%s", r.pkg, err, deps)
			}
			for _, d := range strings.Fields(string(deps)) {
				if strings.HasPrefix(d, nagare+"pkg/api/") || strings.HasPrefix(d, nagare+"pkg/server") {
					t.Errorf("%s depends on %s: the domain must not reach the HTTP layer", r.pkg, d)
				}
			}
		}
	}
}
