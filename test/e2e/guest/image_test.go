package guest

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCPIOExtractsWithBusybox(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("needs busybox (scripts/setup.sh)")
	}
	var buf bytes.Buffer
	c := &cpioWriter{w: &buf}
	c.dir("etc", 0o755)
	c.file("etc/hello", 0o644, []byte("hello, guest\n"))
	c.file("init", 0o755, []byte("#!/bin/sh\n")) // a 10-byte file: its data needs padding
	c.file("empty", 0o600, nil)
	c.symlink("sh", "busybox")
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%4 != 0 {
		t.Errorf("archive of %d bytes: newc entries are 4-byte aligned", buf.Len())
	}
	dir := t.TempDir()
	cmd := exec.Command("busybox", "cpio", "-i", "-d")
	cmd.Dir, cmd.Stdin = dir, &buf
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v: %s", err, out)
	}
	for name, want := range map[string]string{"etc/hello": "hello, guest\n", "init": "#!/bin/sh\n", "empty": ""} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s: %q (%v), want %q", name, got, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "init")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("init's mode: %v (%v), want 0755", fi.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "sh")); err != nil || target != "busybox" {
		t.Errorf("sh → %q (%v), want busybox", target, err)
	}
}

func TestCPIODeviceNode(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("needs busybox (scripts/setup.sh)")
	}
	var buf bytes.Buffer
	c := &cpioWriter{w: &buf}
	c.charDev("dev/console", 0o600, 5, 1)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	archive := buf.Bytes()
	cmd := exec.Command("busybox", "cpio", "-t", "-v")
	cmd.Stdin = bytes.NewReader(archive)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("busybox cpio -tv: %v: %s", err, out)
	}
	if f := strings.Fields(string(out)); len(f) == 0 || f[0] != "crw-------" {
		t.Errorf("busybox cpio -tv lists %q, want a character device with mode 0600", out)
	}
	if os.Geteuid() != 0 {
		t.Skip("the device numbers are checked by extracting the node, which needs root")
	}
	dir := t.TempDir()
	cmd = exec.Command("busybox", "cpio", "-i", "-d")
	cmd.Dir, cmd.Stdin = dir, bytes.NewReader(archive)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v: %s", err, out)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "dev/console"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 5 || unix.Minor(st.Rdev) != 1 {
		t.Errorf("dev/console: mode %o, device %d:%d; want a character device 5:1", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
}

func TestCPIOBadName(t *testing.T) {
	for _, name := range []string{"", "/", "a\x00b"} {
		c := &cpioWriter{w: &bytes.Buffer{}}
		c.file(name, 0o644, nil)
		if err := c.close(); err == nil {
			t.Errorf("entry %q: no error", name)
		}
	}
}

func TestParseModinfoDepends(t *testing.T) {
	for _, c := range []struct {
		name, info string
		want       []string
	}{
		{"several", "license=GPL\x00depends=virtio_ring,virtio,net_failover\x00name=virtio_net\x00", []string{"virtio_ring", "virtio", "net_failover"}},
		{"none", "depends=\x00name=failover\x00", nil},
		{"no field", "name=x\x00vermagic=6.1\x00", nil},
		{"dashes read as underscores", "depends=nf-conntrack,,x\x00", []string{"nf_conntrack", "x"}},
		{"padding", "\x00\x00depends=a\x00\x00\x00", []string{"a"}},
		{"not at a field start", "xdepends=a\x00", nil},
	} {
		if got := parseModinfoDepends([]byte(c.info)); !slices.Equal(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func FuzzParseModinfoDepends(f *testing.F) {
	f.Add([]byte("depends=virtio_ring,virtio\x00name=virtio_net\x00"))
	f.Add([]byte("depends=\x00"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, info []byte) {
		for _, d := range parseModinfoDepends(info) {
			if d == "" || strings.ContainsAny(d, "-,\x00") {
				t.Fatalf("dependency %q from %q", d, info)
			}
		}
	})
}

func TestLoadOrder(t *testing.T) {
	deps := map[string][]string{
		"virtio_net":   {"virtio_ring", "virtio", "net_failover"},
		"net_failover": {"failover"},
		"virtio_pci":   {"virtio_ring", "virtio"},
		"virtio_ring":  nil, "virtio": nil, "failover": nil,
		"a": {"b"}, "b": {"a"},
		"needs_missing": {"missing"},
	}
	exists := func(n string) bool { _, ok := deps[n]; return ok }
	for _, c := range []struct {
		name    string
		wanted  []string
		builtin []string
		want    []string
		err     string
	}{
		{"dependencies first, each once", []string{"virtio_pci", "virtio_net"}, nil,
			[]string{"virtio_ring", "virtio", "virtio_pci", "failover", "net_failover", "virtio_net"}, ""},
		{"built-in modules left out", []string{"virtio_net"}, []string{"virtio", "virtio_ring"},
			[]string{"failover", "net_failover", "virtio_net"}, ""},
		{"cycle", []string{"a"}, nil, nil, "cycle: a → b → a"},
		{"missing", []string{"needs_missing"}, nil, nil, "missing not found (needed by needs_missing)"},
	} {
		got, err := loadOrder(c.wanted, exists, func(n string) bool { return slices.Contains(c.builtin, n) },
			func(n string) ([]string, error) { return deps[n], nil })
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one saying %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("%s: %v (%v), want %v", c.name, got, err, c.want)
		}
	}
	_, err := loadOrder([]string{"virtio_net"}, exists, func(string) bool { return false },
		func(string) ([]string, error) { return nil, errors.New("unreadable") })
	if err == nil || !strings.Contains(err.Error(), "unreadable") {
		t.Errorf("a module whose dependencies cannot be read: %v", err)
	}
}

func TestModuleName(t *testing.T) {
	for file, want := range map[string]string{
		"kernel/drivers/net/virtio_net.ko": "virtio_net", "net_failover.ko.xz": "net_failover",
		"x/nf-nat.ko.zst": "nf_nat", "a.ko.gz": "a", "modules.dep": "", "virtio_net.ko.bz2": "",
	} {
		got, ok := moduleName(file)
		if got != want || ok != (want != "") {
			t.Errorf("moduleName(%q) = %q, %v; want %q", file, got, ok, want)
		}
	}
}

// Compressed modules (Debian trixie's are .ko.xz) come out as the ELF
// busybox's insmod hands to init_module(2).
func TestReadCompressedModule(t *testing.T) {
	ko := bytes.Repeat([]byte("\x7fELF module bytes "), 1000)
	dir := t.TempDir()
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write(ko); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{"m.ko": ko, "m.ko.gz": gz.Bytes()}
	for tool, ext := range map[string]string{"xz": ".ko.xz", "zstd": ".ko.zst"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Logf("%s not installed: %s not tried", tool, ext)
			continue
		}
		cmd := exec.Command(tool, "-c")
		cmd.Stdin = bytes.NewReader(ko)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s -c: %v", tool, err)
		}
		files["m"+ext] = out
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := readModule(path)
		if err != nil || !bytes.Equal(got, ko) {
			t.Errorf("%s: %d bytes (%v), want the %d-byte module", name, len(got), err, len(ko))
		}
	}
	if _, err := readModule(filepath.Join(dir, "m.ko.gz.bad")); err == nil {
		t.Error("a file that is no module: no error")
	}
}

func TestHasPVHEntryRejects(t *testing.T) {
	for name, b := range map[string][]byte{"empty": nil, "junk": []byte("MZ not an ELF"), "truncated ELF": []byte("\x7fELF\x02\x01\x01")} {
		if hasPVHEntry(b) {
			t.Errorf("%s: reported a PVH entry", name)
		}
	}
	if _, err := vmlinux([]byte("no compressed kernel in here")); err == nil {
		t.Error("vmlinux of junk: no error")
	}
}

// The Debian kernel scripts/setup.sh unpacks, when it is there.
func TestDebianKernel(t *testing.T) {
	k, err := FindKernel()
	if err != nil {
		t.Skip(err)
	}
	mods, err := modulesFor(k.Modules, netModules...)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range mods {
		names = append(names, m.name)
	}
	t.Logf("kernel %s: modules %v", k.Release, names)
	pos := func(n string) int { return slices.Index(names, n) }
	if pos("virtio_net") < 0 || pos("virtio_pci") < 0 {
		t.Fatalf("load order %v lacks virtio_net or virtio_pci", names)
	}
	for _, d := range []string{"net_failover", "failover", "virtio", "virtio_ring"} {
		if p := pos(d); p >= 0 && p > pos("virtio_net") {
			t.Errorf("%s loads after virtio_net, which needs it: %v", d, names)
		}
	}
	bz, err := os.ReadFile(k.Image)
	if err != nil {
		t.Fatal(err)
	}
	elfKernel, err := vmlinux(bz)
	if err != nil {
		t.Fatalf("no uncompressed kernel in %s: %v", k.Image, err)
	}
	if !hasPVHEntry(elfKernel) {
		t.Errorf("the uncompressed kernel has no PVH entry")
	}
}
