package lbhealth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/netns"
)

// Netns is the plumbing of a datapath of the kernel's interfaces: a veth
// from the datapath's namespace (a path; empty for the agent's own) into
// an anonymous namespace of the checks' own.
type Netns struct {
	Path string
}

// Open implements Plumbing.
func (n Netns) Open(ifname string, mtu int) (Checker, error) {
	dp, err := netns.NetlinkPath(n.Path)
	if err != nil {
		return nil, err
	}
	defer dp.Close()
	if old, err := dp.LinkByName(ifname); err == nil {
		_ = dp.LinkDel(old) // a leftover of an earlier run of this router's checks
	}
	ns, err := netns.New()
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			ns.Close()
		}
	}()
	la := netlink.NewLinkAttrs()
	la.Name = ifname
	if err := dp.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}); err != nil {
		return nil, fmt.Errorf("create veth %s: %w", ifname, err)
	}
	// Best effort: IPv6 on the datapath end only adds noise.
	_ = netns.DoPath(n.Path, func() error { return disableIPv6(ifname) })
	link, err := dp.LinkByName(ifname)
	if err == nil {
		err = dp.LinkSetUp(link)
	}
	if err != nil {
		_ = dp.LinkDel(link)
		return nil, fmt.Errorf("set %s up: %w", ifname, err)
	}
	if err := configure(ns, mtu); err != nil {
		_ = dp.LinkDel(link)
		return nil, err
	}
	ok = true
	return &checkNS{plumbing: n, ifname: ifname, ns: ns}, nil
}

// checkNS is one router's check namespace and its veth.
type checkNS struct {
	plumbing Netns
	ifname   string
	ns       netns.Handle
}

func (c *checkNS) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	return netns.Dial(ctx, c.ns, network, addr)
}

// Close deletes the veth (its end in the check namespace goes with it)
// and lets the namespace go.
func (c *checkNS) Close() error {
	dp, err := netns.NetlinkPath(c.plumbing.Path)
	if err == nil {
		if l, lerr := dp.LinkByName(c.ifname); lerr == nil {
			err = dp.LinkDel(l)
		}
		dp.Close()
	}
	return errors.Join(err, c.ns.Close())
}

// configure gives the namespace end its address and default route. Its
// offloads stay on: the datapath takes partial checksums and super-frames
// as from any VM.
func configure(ns netns.Handle, mtu int) error {
	nh, err := netns.Netlink(ns)
	if err != nil {
		return fmt.Errorf("the health-check namespace: %w", err)
	}
	defer nh.Close()
	if err := netns.Do(ns, func() error { return disableIPv6("eth0") }); err != nil {
		return fmt.Errorf("health-check namespace eth0: %w", err)
	}
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("health-check namespace lo: %w", err)
	}
	eth, err := nh.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("health-check namespace eth0: %w", err)
	}
	if mtu > 0 {
		if err := nh.LinkSetMTU(eth, mtu); err != nil {
			return fmt.Errorf("health-check namespace eth0 mtu %d: %w", mtu, err)
		}
	}
	if err := nh.AddrAdd(eth, &netlink.Addr{IPNet: prefixIPNet(hostclaim.HealthPeerAddr)}); err != nil {
		return fmt.Errorf("health-check namespace address %s: %w", hostclaim.HealthPeerAddr, err)
	}
	if err := nh.LinkSetUp(eth); err != nil {
		return fmt.Errorf("health-check namespace eth0 up: %w", err)
	}
	if err := nh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: hostclaim.HealthPortAddr.AsSlice()}); err != nil {
		return fmt.Errorf("health-check namespace default route via %s: %w", hostclaim.HealthPortAddr, err)
	}
	return nil
}

// disableIPv6 keeps an interface's own stack quiet (no router
// solicitations, no MLD) on the virtual wire. Run inside its namespace.
func disableIPv6(ifname string) error {
	return os.WriteFile("/proc/sys/net/ipv6/conf/"+ifname+"/disable_ipv6", []byte("1"), 0o644)
}

func prefixIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
