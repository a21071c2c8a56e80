//go:build linux

package dptest_test

import (
	"testing"

	"github.com/nagare/nagare/pkg/datapath/dptest"
	// The implementations, registered: the suite runs against each.
	_ "github.com/nagare/nagare/pkg/datapath/ebpf"
	_ "github.com/nagare/nagare/pkg/datapath/memory"
	_ "github.com/nagare/nagare/pkg/datapath/userspace"
)

// TestConformance runs the datapath conformance suite against every
// registered implementation: the in-memory one always, those of the
// kernel's interfaces in real namespaces (skipped when not root).
func TestConformance(t *testing.T) { dptest.RunAll(t) }
