package archtest

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// threadSwitch matches the calls that move an OS thread into another
// network namespace, or pin a goroutine to a thread to do so.
var threadSwitch = regexp.MustCompile(`runtime\.LockOSThread\(|netns\.Set\(|netns\.New(Named)?\(|unix\.Setns\(|unix\.Unshare\(`)

// pendingNetns are files that still switch namespaces themselves. They
// move to pkg/netns with the agent's restructuring; delete each entry when
// its file no longer matches (the test says when).
var pendingNetns = []string{
	"pkg/agent/health/netns_linux.go",
}

// Only pkg/netns switches threads between network namespaces. Getting it
// right takes care (a fresh goroutine, a locked thread, switching back, and
// never unlocking a thread that could not switch back), and the tree once
// held six copies of it: use netns.Do, Dial, Listen, Socket, Netlink or New.
func TestOnlyNetnsSwitchesNamespaces(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	var still []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && rel != "." || rel == "pkg/netns" || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !threadSwitch.Match(b) {
			return nil
		}
		if slices.Contains(pendingNetns, rel) {
			still = append(still, rel)
			return nil
		}
		t.Errorf("%s switches a thread's network namespace itself (%s); use pkg/netns", rel, threadSwitch.Find(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pendingNetns {
		if !slices.Contains(still, p) {
			t.Errorf("%s no longer switches namespaces itself: delete it from pendingNetns", p)
		}
	}
}
