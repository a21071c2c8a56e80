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
