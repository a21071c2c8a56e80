//go:build linux

package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// BacklogDrops is how many packets the kernel dropped because a CPU's
// input backlog was full (the second column of /proc/net/softnet_stat,
// summed over CPUs). Every veth hop of every namespace on the machine
// queues there (net.core.netdev_max_backlog per CPU), so traffic of other
// processes can drop a test's packets before any datapath sees them; a
// test that lost packets says whether this counter moved meanwhile.
func BacklogDrops() (uint64, error) {
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		return 0, err
	}
	var sum uint64
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			return 0, fmt.Errorf("softnet_stat: short line %q", line)
		}
		n, err := strconv.ParseUint(f[1], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("softnet_stat: %w", err)
		}
		sum += n
	}
	return sum, nil
}
