//go:build linux

package ebpf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedObjectIsCurrent recompiles the programs into a scratch
// directory and compares the result with the committed object and
// bindings, when clang is installed (building never needs it).
func TestGeneratedObjectIsCurrent(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed: the committed object is used as is")
	}
	if testing.Short() {
		t.Skip("compiles the BPF programs")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "tool", "bpf2go", "-go-package", "ebpf", "-output-dir", dir, "-tags", "linux", "-target", "bpfel",
		"-type", "upcall", "-type", "action", "-type", "ct_key", "-cflags", "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu", "datapath", "bpf/datapath.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, out)
	}
	for _, f := range []string{"datapath_bpfel.o", "datapath_bpfel.go"} {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `go generate` in pkg/datapath/ebpf and commit the result", f)
		}
	}
}
