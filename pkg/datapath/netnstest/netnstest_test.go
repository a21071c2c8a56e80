//go:build linux

package netnstest

import (
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestNamespacesAndVeth(t *testing.T) {
	a, b := New(t, "a"), New(t, "b")
	if !strings.HasPrefix(a.Name, Prefix) || a.Name == b.Name {
		t.Fatalf("names %q, %q: want distinct names starting with %q", a.Name, b.Name, Prefix)
	}
	Veth(t, a, "x0", b, "y0")
	if out := a.Run(t, "ip", "-o", "link", "show", "x0"); !strings.Contains(out, "state UP") &&
		!strings.Contains(out, "LOWER_UP") {
		t.Errorf("x0 not up: %s", out)
	}
	if _, err := b.Exec("ip", "link", "show", "x0"); err == nil {
		t.Error("x0 visible in the peer's namespace")
	}

	host := nsInode(t, "/proc/self/ns/net")
	var inside uint64
	if err := a.Do(func() error {
		var st unix.Stat_t
		err := unix.Stat("/proc/thread-self/ns/net", &st)
		inside = st.Ino
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside != nsInode(t, a.Path) || inside == host {
		t.Errorf("Do ran in netns inode %d, want %d (host %d)", inside, nsInode(t, a.Path), host)
	}
	if now := nsInode(t, "/proc/self/ns/net"); now != host {
		t.Errorf("process left in netns %d after Do, want %d", now, host)
	}
}

func TestCleanupRemovesNamespace(t *testing.T) {
	var path string
	t.Run("inner", func(t *testing.T) { path = New(t, "gone").Path })
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("%s still exists after its test ended (stat: %v)", path, err)
	}
}
