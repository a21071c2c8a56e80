package datapath

import (
	"fmt"
	"time"

	"github.com/nagare/nagare/pkg/packet"
)

// Check validates a port's configuration on its own, filling in the
// default MTU: what every implementation's AddPort refuses before looking
// at the interface.
func (c *PortConfig) Check() error {
	if c.MTU <= 0 {
		c.MTU = 1500
	}
	if c.PortID == "" || c.Interface == "" {
		return fmt.Errorf("datapath: add port: PortID and Interface are required")
	}
	if c.TunnelKey != 0 && packet.ReservedTunnelKey(c.TunnelKey) {
		return fmt.Errorf("datapath: add port %s: tunnel key %d is reserved for the agents' own packets", c.PortID, c.TunnelKey)
	}
	if c.TunnelKey > packet.MaxTunnelKey {
		return fmt.Errorf("datapath: add port %s: tunnel key %d does not fit in 24 bits", c.PortID, c.TunnelKey)
	}
	return nil
}

// PortLookup finds attached ports by each of the keys that must be unique;
// nil when none.
type PortLookup struct {
	ByID        func(string) *PortConfig
	ByIndex     func(int32) *PortConfig
	ByTunnelKey func(uint32) *PortConfig
	ByInterface func(string) *PortConfig
}

// Clash returns the error AddPort reports when c shares its PortID,
// Index, TunnelKey or Interface with an attached port.
func (l PortLookup) Clash(c *PortConfig) error {
	if l.ByID(c.PortID) != nil {
		return fmt.Errorf("datapath: add port %s: already attached", c.PortID)
	}
	if o := l.ByIndex(c.Index); o != nil {
		return fmt.Errorf("datapath: add port %s: index %d already used by port %s", c.PortID, c.Index, o.PortID)
	}
	if o := l.ByTunnelKey(c.TunnelKey); c.TunnelKey != 0 && o != nil {
		return fmt.Errorf("datapath: add port %s: tunnel key %d already used by port %s", c.PortID, c.TunnelKey, o.PortID)
	}
	if o := l.ByInterface(c.Interface); o != nil {
		return fmt.Errorf("datapath: add port %s: interface %s already bound to port %s", c.PortID, c.Interface, o.PortID)
	}
	return nil
}

// ExpiryPeriod is how often a datapath sweeps for idle flows: a quarter
// of the shortest idle timeout (so a flow lives at most 25% longer than
// its timeout), between 10 ms and 1 s.
func (c FlowConfig) ExpiryPeriod() time.Duration {
	period := c.IdleTimeout[0]
	for _, d := range c.IdleTimeout {
		period = min(period, d)
	}
	return min(max(period/4, 10*time.Millisecond), time.Second)
}
