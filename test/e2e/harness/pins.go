//go:build linux

package harness

import (
	"fmt"
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

// RemoveDatapath removes what the hypervisor's kernel datapath pinned,
// its agent being dead: nothing holds its programs and maps any more, so
// the programs detach and the maps go, as when the host itself dies. (The
// collect_md VXLAN device stays, without programs: an agent started
// afterwards adopts it.)
func (h *Hypervisor) RemoveDatapath() error {
	if !h.AgentExited() {
		return fmt.Errorf("remove %s's datapath: its agent runs", h.Name)
	}
	return ebpf.RemovePins(h.Name, h.NS.Path)
}
