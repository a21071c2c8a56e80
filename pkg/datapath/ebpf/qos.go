//go:build linux

package ebpf

import (
	"fmt"

	"github.com/cilium/ebpf"

	"github.com/nagare/nagare/pkg/datapath"
)

// Port rate limits: token buckets in the kernel, one per port and
// direction, with the semantics of datapath.Policer.

// SetPortQoS implements datapath.Datapath: the port's token buckets are
// its two entries of the policers map (bpf/nagare.h, struct policer),
// which port_in checks for what the port's VM sends and every output or
// tunnel delivery to the port for what it receives (the agent's Execute
// included: it outputs through exec_in). A bucket set anew starts full.
func (dp *Datapath) SetPortQoS(portID string, q datapath.PortQoS) error {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return datapath.ErrClosed
	}
	p := dp.ports.Load().byID[portID]
	if p == nil {
		return fmt.Errorf("datapath: set port QoS: port %s: %w", portID, datapath.ErrUnknownPort)
	}
	if p.qos == q {
		return nil // unchanged: keep the buckets' tokens
	}
	if err := dp.writePolicers(p.slot, q); err != nil {
		return fmt.Errorf("datapath: set port QoS of %s: %w", portID, err)
	}
	p.qos = q
	return nil
}

// writePolicers writes the buckets of slot's limits (none for a zero q).
func (dp *Datapath) writePolicers(slot uint32, q datapath.PortQoS) error {
	for _, b := range []struct {
		dir          uint32
		kbps, burstK uint32
	}{{policeEgress, q.EgressKbps, q.EgressBurstKbit}, {policeIngress, q.IngressKbps, q.IngressBurstKbit}} {
		v := bucketOf(b.kbps, b.burstK)
		if err := dp.objs.Policers.Update(slot*2+b.dir, &v, ebpf.UpdateLock); err != nil {
			return fmt.Errorf("write policer: %w", err)
		}
	}
	return nil
}

// bucketOf is the kernel's full bucket of a rate limit (datapath.Bucket's
// rate and burst, the burst as the nanoseconds the rate takes to fill
// it), the zero policer for no limit. The rate is a whole number of
// bytes per second (125 per kbit/s), and the burst fits: at most 2^32
// kbit at 1 kbit/s, 4.3e18 ns.
func bucketOf(kbps, burstKbit uint32) policer {
	if kbps == 0 {
		return policer{}
	}
	rate, burst := datapath.Bucket(kbps, burstKbit)
	ns := uint64(burst / rate * 1e9)
	return policer{Rate: uint64(rate), Burst: ns, Tokens: ns}
}
