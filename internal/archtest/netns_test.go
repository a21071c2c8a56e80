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
var threadSwitch = regexp.MustCompile(`runtime\.LockOSThread\(|unix\.Setns\(|unix\.Unshare\(`)

// vishvanandaSwitch matches vishvananda/netns's switching calls, in a file
// that imports that package (pkg/netns's own New is the safe one).
var vishvanandaSwitch = regexp.MustCompile(`(?s)"github.com/vishvananda/netns".*(netns\.(?:Set|New|NewNamed)\()`)

// pendingNetns are files that still switch namespaces themselves, while
// they move to pkg/netns; delete each entry when its file no longer
// matches (the test says when).
var pendingNetns = []string{}

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
		found := threadSwitch.Find(b)
		if m := vishvanandaSwitch.FindSubmatch(b); found == nil && m != nil {
			found = m[1]
		}
		if found == nil {
			return nil
		}
		if slices.Contains(pendingNetns, rel) {
			still = append(still, rel)
			return nil
		}
		t.Errorf("%s switches a thread's network namespace itself (%s); use pkg/netns", rel, found)
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
