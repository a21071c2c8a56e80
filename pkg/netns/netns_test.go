//go:build linux

package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// prefix names this process's test namespaces, in the form Orphans reads.
var prefix = fmt.Sprintf("nnstest%d-", os.Getpid())

var seq atomic.Uint32

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
}

// named creates a named namespace for the test and deletes it in Cleanup.
func named(t *testing.T) (name, path string) {
	t.Helper()
	name = fmt.Sprintf("%s%d", prefix, seq.Add(1))
	path, err := AddNamed(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := DeleteNamed(name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return name, path
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// threadInodes returns the namespace inode of every thread of the process.
func threadInodes(t *testing.T) map[int]uint64 {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]uint64{}
	for _, e := range tasks {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join("/proc/self/task", e.Name(), "ns/net"), &st); err != nil {
			continue // the thread exited meanwhile
		}
		var tid int
		fmt.Sscan(e.Name(), &tid)
		out[tid] = st.Ino
	}
	return out
}

func TestDoEntersAndLeaves(t *testing.T) {
	needRoot(t)
	_, path := named(t)
	host := inode(t, "/proc/self/ns/net")
	for i := 0; i < 20; i++ {
		var inside uint64
		if err := DoPath(path, func() error {
			inside = inode(t, "/proc/thread-self/ns/net")
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if inside != inode(t, path) || inside == host {
			t.Fatalf("fn ran in namespace %d, want %d (host %d)", inside, inode(t, path), host)
		}
	}
	for tid, ino := range threadInodes(t) {
		if ino != host {
			t.Errorf("thread %d left in namespace %d after Do, want %d", tid, ino, host)
		}
	}

	want := errors.New("fn failed")
	if err := DoPath(path, func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	if err := DoPath("/nonexistent/ns", func() error { t.Error("fn ran"); return nil }); err == nil {
		t.Error("Do in a missing namespace succeeded")
	}
	// A handle to something that is not a network namespace: setns fails
	// and the thread stays where it was.
	f, err := os.Open("/proc/self/ns/uts")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Do(Handle(f.Fd()), func() error { t.Error("fn ran"); return nil }); err == nil {
		t.Error("Do into a UTS namespace handle succeeded")
	}
}

// A thread that cannot be switched back is never reused: it exits with
// its goroutine.
func TestThreadRetiredWhenRestoreFails(t *testing.T) {
	// The runtime wedges rather than terminates the main thread, so
	// retry until the goroutine lands on another one (after the first
	// landing, the wedged main thread takes no more goroutines).
	tid := os.Getpid()
	for i := 0; i < 10 && tid == os.Getpid(); i++ {
		err := onLockedThread(func() error {
			tid = unix.Gettid()
			return fmt.Errorf("simulated: %w", errRestore)
		})
		if !errors.Is(err, errRestore) {
			t.Fatalf("err %v", err)
		}
	}
	if tid == os.Getpid() {
		t.Fatal("every try ran on the main thread: a thread that failed to switch back is being reused, not wedged")
	}
	task := fmt.Sprintf("/proc/self/task/%d", tid)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(task); os.IsNotExist(err) {
			return
		}
	}
	t.Errorf("thread %d still alive after its goroutine exited locked", tid)
}

func TestSocketsLiveInTheNamespace(t *testing.T) {
	needRoot(t)
	ns, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := loopbackUp(ns); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		t.Fatal(err)
	}
	if st.Ino == inode(t, "/proc/self/ns/net") {
		t.Fatal("New returned the host's namespace")
	}

	l, err := Listen(ns, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, ns, "tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial the namespace's listener from inside: %v", err)
	}
	c.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}

	fd, err := Socket(ns, unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	nsfd, err := unix.IoctlRetInt(fd, unix.SIOCGSKNS)
	if err != nil {
		t.Fatalf("SIOCGSKNS: %v", err)
	}
	defer unix.Close(nsfd)
	var sst unix.Stat_t
	if err := unix.Fstat(nsfd, &sst); err != nil {
		t.Fatal(err)
	}
	if sst.Ino != st.Ino {
		t.Errorf("socket in namespace %d, want %d", sst.Ino, st.Ino)
	}

	h, err := Netlink(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	if len(links) != 1 || links[0].Attrs().Name != "lo" {
		t.Errorf("links in a new namespace: %v, want only lo", links)
	}
}

func TestNamedAndOrphans(t *testing.T) {
	needRoot(t)
	name, path := named(t)
	out, err := exec.Command("ip", "netns", "exec", name, "ip", "-o", "link", "show", "lo").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec %s: %v: %s", name, err, out)
	}
	if !slices.Contains([]string{"UP", "UNKNOWN"}, loState(string(out))) {
		t.Errorf("lo not up: %s", out)
	}
	if _, err := AddNamed(name); err == nil {
		t.Error("adding an existing name succeeded")
	}

	// A namespace named after a process that has exited is an orphan;
	// this process's own are not.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	orphan := fmt.Sprintf("nnstest%d-orphan", dead.Process.Pid)
	if _, err := AddNamed(orphan); err != nil {
		t.Fatal(err)
	}
	defer DeleteNamed(orphan) //nolint:errcheck // deleted below when the test passes
	got := Orphans("nnstest")
	if !slices.Contains(got, orphan) || slices.Contains(got, name) {
		t.Errorf("Orphans = %v, want %s and not %s", got, orphan, name)
	}
	if err := DeleteNamed(orphan); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(Path(orphan)); !os.IsNotExist(err) {
		t.Errorf("%s still there after DeleteNamed (%v)", Path(orphan), err)
	}
	if path != Path(name) {
		t.Errorf("path %s, want %s", path, Path(name))
	}
	// A netlink handle opened by path works in that namespace: a veth
	// made through it is there, not in the host's.
	h, err := NetlinkPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "nnsdummy0"}, PeerName: "nnsdummy1"}); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", name, "ip", "-o", "link", "show", "nnsdummy0").CombinedOutput(); err != nil {
		t.Fatalf("the veth made through NetlinkPath is not in %s: %v: %s", name, err, out)
	}
	if _, err := exec.Command("ip", "-o", "link", "show", "nnsdummy0").CombinedOutput(); err == nil {
		t.Fatal("the veth made through NetlinkPath is in the host's namespace")
	}
}

// loState returns the operstate word of an `ip -o link` line.
func loState(line string) string {
	f := strings.Fields(line)
	if i := slices.Index(f, "state"); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}
