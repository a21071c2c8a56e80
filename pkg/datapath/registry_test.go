package datapath

import (
	"slices"
	"strings"
	"testing"
)

func TestRegistry(t *testing.T) {
	type fake struct{ Datapath }
	Register("test-registry", func(cfg Config) (Datapath, error) { return fake{}, nil })
	if !slices.Contains(Names(), "test-registry") || !slices.IsSorted(Names()) {
		t.Fatalf("Names() = %v", Names())
	}
	dp, err := New("test-registry", Config{})
	if _, ok := dp.(fake); err != nil || !ok {
		t.Fatalf("New = %v, %v", dp, err)
	}
	_, err = New("ebpf", Config{})
	if err == nil || !strings.Contains(err.Error(), "eBPF datapath is not built yet") || !strings.Contains(err.Error(), "test-registry") {
		t.Fatalf("New(ebpf) = %v; want a clear error listing what exists", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a name twice did not panic")
		}
	}()
	Register("test-registry", func(cfg Config) (Datapath, error) { return fake{}, nil })
}
