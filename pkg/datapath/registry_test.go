package datapath

import (
	"errors"
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
	_, err = New("nosuch", Config{})
	if err == nil || !strings.Contains(err.Error(), `"nosuch" is not available`) || !strings.Contains(err.Error(), "test-registry") {
		t.Fatalf("New(nosuch) = %v; want a clear error listing what exists", err)
	}
	// A probe that fails keeps New from starting the datapath, and Default
	// from choosing it, with the probe's reason.
	Register("test-unsupported", func(cfg Config) (Datapath, error) { return fake{}, nil })
	RegisterProbe("test-unsupported", func() error { return errors.New("no such kernel feature") })
	if _, err := New("test-unsupported", Config{}); err == nil || !strings.Contains(err.Error(), "no such kernel feature") {
		t.Fatalf("New of an unsupported datapath = %v", err)
	}
	defer func(p []string) { Preference = p }(Preference)
	Preference = []string{"test-unsupported", "nosuch", "test-registry"}
	if name, passed := Default(); name != "test-registry" || len(passed) != 2 {
		t.Fatalf("Default() = %q, passing over %v; want test-registry after two", name, passed)
	}
	defer func() {
		if recover() == nil {
			t.Error("registering a name twice did not panic")
		}
	}()
	Register("test-registry", func(cfg Config) (Datapath, error) { return fake{}, nil })
}
