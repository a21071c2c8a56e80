package bgp

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/netns"
)

// Veth is the plumbing of an agent whose datapath works in its own
// network namespace (the host's, in production): a veth whose speaker end
// carries the uplink port's MAC and address, as a host address without a
// prefix route (so the host's routing table is not touched), and whose
// other end ("nbd" + the same digits) the datapath binds.
//
// GoBGP opens its sockets (sessions, listener, BFD) on goroutines of its
// own, in the process's namespace: the speaker interface must be there,
// which is why an agent running outside its datapath's namespace
// (--netns) cannot speak BGP. The sockets are bound to the speaker
// interface (SO_BINDTODEVICE), so sessions leave by it on-link, whatever
// the host's routes say.
type Veth struct{}

// Open implements Plumbing.
func (Veth) Open(p SpeakerPort) (string, error) {
	end := "nbd" + strings.TrimPrefix(p.Name, "nbs")
	h, err := netns.NetlinkPath("")
	if err != nil {
		return "", err
	}
	defer h.Close()
	// The pair an agent that was killed left is reused, not made anew: a
	// datapath that outlived that agent (eBPF, pinned) still sends the
	// sessions' packets (BFD's keep their addresses and ports across the
	// restart) to the datapath end's interface index, which a new pair
	// would not have.
	if !leftoverPair(h, p.Name, end) {
		for _, n := range []string{p.Name, end} {
			if old, err := h.LinkByName(n); err == nil {
				_ = h.LinkDel(old) // a leftover of an earlier run, not a pair
			}
		}
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU, la.HardwareAddr = p.Name, p.MTU, net.HardwareAddr(p.MAC[:])
		if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: end}); err != nil {
			return "", fmt.Errorf("create veth %s: %w", p.Name, err)
		}
	}
	ok := false
	defer func() {
		if !ok {
			if l, err := h.LinkByName(p.Name); err == nil {
				_ = h.LinkDel(l)
			}
		}
	}()
	if err := configure(h, p, end); err != nil {
		return "", err
	}
	ok = true
	return end, nil
}

// leftoverPair reports whether the speaker's veth pair exists.
func leftoverPair(h *netlink.Handle, name, end string) bool {
	sp, err := h.LinkByName(name)
	if err != nil {
		return false
	}
	dp, err := h.LinkByName(end)
	if err != nil {
		return false
	}
	_, veth := sp.(*netlink.Veth)
	return veth && sp.Attrs().ParentIndex == dp.Attrs().Index
}

// configure sets the pair up as p says, whether it is new or reused.
func configure(h *netlink.Handle, p SpeakerPort, end string) error {
	sp, err := h.LinkByName(p.Name)
	if err != nil {
		return err
	}
	dp, err := h.LinkByName(end)
	if err != nil {
		return err
	}
	if mac := net.HardwareAddr(p.MAC[:]); sp.Attrs().HardwareAddr.String() != mac.String() {
		if err := h.LinkSetHardwareAddr(sp, mac); err != nil {
			return fmt.Errorf("MAC %s on %s: %w", mac, p.Name, err)
		}
	}
	for _, l := range []netlink.Link{sp, dp} {
		if p.MTU > 0 && l.Attrs().MTU != p.MTU {
			if err := h.LinkSetMTU(l, p.MTU); err != nil {
				return fmt.Errorf("MTU %d on %s: %w", p.MTU, l.Attrs().Name, err)
			}
		}
	}
	// The speaker's offloads stay on: the datapath takes partial
	// checksums and super-frames as from any VM.
	for name, vals := range map[string]map[string]string{
		// The speaker's own address only, and quiet otherwise.
		p.Name: {"ipv4/conf/%s/rp_filter": "0", "ipv4/conf/%s/arp_ignore": "1"},
		end:    {"ipv6/conf/%s/disable_ipv6": "1"},
		// The host's stack sees the uplink's frames too (AF_PACKET does
		// not steal them): it must not answer ARP for the speaker's
		// address there, which the router port answers.
		p.Uplink: {"ipv4/conf/%s/arp_ignore": "1"},
	} {
		for k, v := range vals {
			if err := sysctl(fmt.Sprintf(k, name), v); err != nil {
				return err
			}
		}
	}
	if p.Addr.Is4() {
		if err := sysctl("ipv6/conf/"+p.Name+"/disable_ipv6", "1"); err != nil {
			return err
		}
	}
	bits := 32
	if p.Addr.Is6() {
		bits = 128
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr.AsSlice(), Mask: net.CIDRMask(bits, bits)}, Flags: unix.IFA_F_NOPREFIXROUTE}
	if p.Addr.Is6() {
		addr.Flags |= unix.IFA_F_NODAD
	}
	// A reused interface may hold an address the port no longer has.
	have, err := h.AddrList(sp, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", p.Name, err)
	}
	for _, a := range have {
		if a.IP.IsGlobalUnicast() && !a.IPNet.IP.Equal(addr.IP) {
			if err := h.AddrDel(sp, &a); err != nil {
				return fmt.Errorf("remove address %s from %s: %w", a.IPNet, p.Name, err)
			}
		}
	}
	if err := h.AddrReplace(sp, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", p.Addr, p.Name, err)
	}
	for _, l := range []netlink.Link{dp, sp} {
		if err := h.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

func sysctl(key, value string) error {
	if err := os.WriteFile("/proc/sys/net/"+key, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s: %w", key, err)
	}
	return nil
}

// Close implements Plumbing.
func (Veth) Close(name string) error {
	h, err := netns.NetlinkPath("")
	if err != nil {
		return err
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return err
	}
	return h.LinkDel(l)
}
