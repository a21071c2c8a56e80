package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const mod = "github.com/nagare/nagare/"

// pkgImports is one package's direct imports: of its code, and of its
// tests.
type pkgImports struct {
	path        string
	code, tests []string
}

// listImports lists the direct imports of every package of the module.
func listImports(t *testing.T) []pkgImports {
	t.Helper()
	out, err := exec.Command("go", "list", "-f",
		"{{.ImportPath}}|{{join .Imports \",\"}}|{{join .TestImports \",\"}},{{join .XTestImports \",\"}}", "../../...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	var pkgs []pkgImports
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "|")
		if len(f) != 3 {
			t.Fatalf("go list line %q", line)
		}
		split := func(s string) []string { return strings.FieldsFunc(s, func(r rune) bool { return r == ',' }) }
		pkgs = append(pkgs, pkgImports{path: f[0], code: split(f[1]), tests: split(f[2])})
	}
	return pkgs
}

// in reports whether path is pattern, or under it when pattern ends in
// "/...".
func in(path, pattern string) bool {
	if p, ok := strings.CutSuffix(pattern, "/..."); ok {
		return path == p || strings.HasPrefix(path, p+"/")
	}
	return path == pattern
}

func inAny(path string, patterns []string) bool {
	for _, p := range patterns {
		if in(path, mod+p) || in(path, p) {
			return true
		}
	}
	return false
}

// agentFeatures are the agent's feature packages (ARCHITECTURE.md):
// each takes narrow interfaces, none depends on the wiring or on another
// feature, except that all read the topology as mirror's snapshots.
var agentFeatures = []string{"session", "mirror", "ports", "learned", "statesync", "lbhealth", "uplink", "slowpath"}

// TestLayers enforces the layer rules of ARCHITECTURE.md on direct
// imports (the transitive rules are in TestDependencyRules).
func TestLayers(t *testing.T) {
	type rule struct {
		what      string
		pkgs      []string // patterns of the packages the rule is about
		forbidden []string // patterns they must not import
		tests     bool     // the tests' imports too
	}
	rules := []rule{
		{"etcd is reached only through pkg/nsdb: the agent imports no etcd client, not even in tests",
			[]string{"pkg/agent/..."}, []string{"go.etcd.io/..."}, true},
		{"only the NSDB layer (and the server that embeds etcd) links etcd's client",
			[]string{"pkg/...", "cmd/...", "internal/..."}, nil, false},
		{"the NSDB knows neither the datapath, the simulator, the agent nor the APIs",
			[]string{"pkg/nsdb/..."}, []string{"pkg/datapath/...", "pkg/sim", "pkg/agent/...", "pkg/api/...", "pkg/neutron", "pkg/server"}, false},
		{"the server side (APIs, Neutron, identity, the dashboard) runs no datapath and no agent",
			[]string{"pkg/api/...", "pkg/neutron", "pkg/identity", "pkg/join", "pkg/hostclaim", "pkg/pki", "pkg/server", "pkg/ui"}, []string{"pkg/datapath/...", "pkg/agent/..."}, false},
		{"the agent speaks to the datapath through pkg/datapath: only the wiring links implementations",
			[]string{"pkg/agent/..."}, []string{"pkg/datapath/userspace", "pkg/datapath/afpacket", "pkg/datapath/memory"}, false},
	}
	// Every feature package: not the wiring, no sibling but mirror.
	for _, f := range agentFeatures {
		var siblings []string
		for _, g := range agentFeatures {
			if g != f && g != "mirror" {
				siblings = append(siblings, "pkg/agent/"+g)
			}
		}
		rules = append(rules, rule{"feature package " + f + " depends on interfaces, not on the agent or another feature",
			[]string{"pkg/agent/" + f}, append(siblings, "pkg/agent"), false})
	}
	etcdClients := []string{"pkg/nsdb", "pkg/nsdb/nsdbtest", "pkg/server", "pkg/server/embedetcd"}
	pkgs := listImports(t)
	for _, p := range pkgs {
		for _, r := range rules {
			if !inAny(p.path, r.pkgs) {
				continue
			}
			imports := p.code
			if r.tests {
				imports = append(append([]string(nil), p.code...), p.tests...)
			}
			for _, imp := range imports {
				bad := inAny(imp, r.forbidden)
				if r.forbidden == nil { // the etcd-client rule
					bad = strings.HasPrefix(imp, "go.etcd.io/etcd/client/") && !inAny(p.path, etcdClients)
				}
				// The wiring links the implementations it offers.
				if p.path == mod+"pkg/agent" && inAny(imp, []string{"pkg/datapath/userspace", "pkg/datapath/memory"}) {
					bad = false
				}
				if bad {
					t.Errorf("%s imports %s: %s", strings.TrimPrefix(p.path, mod), imp, r.what)
				}
			}
		}
	}
	if len(pkgs) < 30 {
		t.Fatalf("only %d packages listed: the rules checked nothing", len(pkgs))
	}
}
