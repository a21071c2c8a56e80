package uplink

import (
	"fmt"

	"github.com/vishvananda/netlink"

	"github.com/nagare/nagare/pkg/netns"
)

// Netns makes VLAN subinterfaces in the datapath's network namespace (a
// path; empty for the agent's own).
type Netns struct {
	Path string
}

// Ensure implements VLANs.
func (n Netns) Ensure(parentName, name string, vid uint16) error {
	h, err := netns.NetlinkPath(n.Path)
	if err != nil {
		return err
	}
	defer h.Close()
	parent, err := h.LinkByName(parentName)
	if err != nil {
		return fmt.Errorf("parent %s: %w", parentName, err)
	}
	if err := h.LinkSetUp(parent); err != nil {
		return err
	}
	link, err := h.LinkByName(name)
	if err != nil {
		v := &netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: name, ParentIndex: parent.Attrs().Index}, VlanId: int(vid)}
		if err := h.LinkAdd(v); err != nil {
			return err
		}
		if link, err = h.LinkByName(name); err != nil {
			return err
		}
	}
	return h.LinkSetUp(link)
}
