//go:build linux

package harness

import (
	"testing"

	"github.com/nagare/nagare/pkg/datapath/ebpf"
)

// removePinsOnCleanup removes, once the test is over and the agent
// stopped (cleanups run last-registered first, and the agent's is
// registered later), what the hypervisor's kernel datapath pinned under
// ebpf.PinRoot: an agent keeps its pins on exit so that a restart adopts
// them, and left behind they would hold their maps' memory until an agent
// of the same name started again.
func (h *Hypervisor) removePinsOnCleanup(t testing.TB) {
	t.Cleanup(func() {
		if err := ebpf.RemovePins(h.Name, h.NS.Path); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
}
