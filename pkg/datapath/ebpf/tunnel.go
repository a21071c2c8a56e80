//go:build linux

package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/packet"
)

// VXLAN and GRE are encapsulated and decapsulated by the programs
// themselves (bpf_skb_adjust_room with the tunnel flags, so that the
// kernel segments GSO frames as a tunnel device's; the outer packet
// routed out of the underlay by bpf_redirect_neigh): a packet skips the
// tunnel device, the UDP socket and their queues and hooks.
//
// GRE has no device at all: many kernels (this project's CI machines
// among them) are built without GRE tunnel devices, and the GRE
// segmentation offload GSO needs is always built in. Frames the program
// cannot grow into GRE (not IP, VLAN-tagged, or not the flow's last
// output) are sent by the agent with a raw socket.
//
// VXLAN keeps the kernel's own VXLAN device in collect_md ("external")
// mode for what the programs leave to it: one device whatever the number
// of peers and keys, the key and remote endpoint set per packet
// (bpf_skb_set_tunnel_key) and read back on receive
// (bpf_skb_get_tunnel_key, tunnel_in). It sends the frames the program
// cannot grow (not IP, VLAN-tagged, not the last output) and receives
// what underlay_in does not decapsulate itself (GRO-merged packets, IP
// fragments, UDP checksums, ARP; vxlan_native in bpf/datapath.c).
//
// A program on the underlay interface sees tunnel packets first, to drop
// strangers' and malformed ones with a reason, to take the flow-state
// packets, whose payload is not an Ethernet frame, out for the agent, to
// answer peers' echo probes, and to decapsulate.
const vxlanName = "ngr-vxlan"

type tunnels struct {
	cfg     datapath.TunnelConfig
	peers   map[[4]byte]struct{}
	vx      *tunDev
	ul      *attachment
	ulIf    int
	vxSock  *net.UDPConn // flow-state packets over VXLAN
	greSock *net.IPConn  // flow-state packets over GRE
}

type tunDev struct {
	ifindex int
	port    uint16 // VXLAN
	att     *attachment
}

// SetTunnels implements datapath.Datapath.
func (dp *Datapath) SetTunnels(cfg datapath.TunnelConfig) error {
	if cfg.VXLANPort == 0 {
		cfg.VXLANPort = packet.DefaultVXLANPort
	}
	if (cfg.VXLAN || cfg.GRE) && !cfg.LocalIP.Unmap().Is4() {
		return fmt.Errorf("datapath: set tunnels: local address %q: only IPv4 underlays are supported", cfg.LocalIP)
	}
	cfg.LocalIP = cfg.LocalIP.Unmap()
	peers := make(map[[4]byte]struct{}, len(cfg.Peers))
	for _, a := range cfg.Peers {
		if a = a.Unmap(); !a.Is4() {
			return fmt.Errorf("datapath: set tunnels: peer %q: only IPv4 underlays are supported", a)
		}
		peers[a.As4()] = struct{}{}
	}
	cfg.Peers = slices.Clone(cfg.Peers)

	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return datapath.ErrClosed
	}
	t := &dp.tun
	if err := dp.setTunnels(t, cfg, peers); err != nil {
		return fmt.Errorf("datapath: set tunnels: %w", err)
	}
	return nil
}

func (dp *Datapath) setTunnels(t *tunnels, cfg datapath.TunnelConfig, peers map[[4]byte]struct{}) error {
	// Devices first, then the configuration that names them, then the
	// peers: a packet never finds a half-made endpoint.
	var err error
	if t.vx, err = dp.ensureDev(t.vx, cfg.VXLAN, vxlanName, cfg.VXLANPort); err != nil {
		return err
	}
	if err := dp.attachUnderlay(t, cfg); err != nil {
		return err
	}
	kc := dp.kcfg // the conntrack timeouts stay
	kc.VxlanPort, kc.LocalIp, kc.VxlanIfindex, kc.GreIfindex, kc.UnderlayIfindex = cfg.VXLANPort, 0, 0, 0, 0
	if cfg.VXLAN || cfg.GRE {
		ip := cfg.LocalIP.As4()
		kc.LocalIp = *(*uint32)(unsafePointer(&ip))
		kc.UnderlayIfindex = uint32(t.ulIf)
	}
	if t.vx != nil {
		kc.VxlanIfindex = uint32(t.vx.ifindex)
	}
	if cfg.GRE {
		kc.GreIfindex = uint32(t.ulIf)
	}
	if err := dp.objs.Config.Put(uint32(0), &kc); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	dp.kcfg = kc
	if err := dp.syncPeers(t.peers, peers); err != nil {
		return err
	}
	t.peers = peers
	if err := dp.stateSockets(t, cfg); err != nil {
		return err
	}
	t.cfg = cfg
	return nil
}

// ensureDev creates, keeps or removes one tunnel device.
func (dp *Datapath) ensureDev(d *tunDev, want bool, name string, port uint16) (*tunDev, error) {
	if d != nil && (!want || d.port != port) {
		if err := dp.removeDev(d, name); err != nil {
			return d, err
		}
		d = nil
	}
	if !want || d != nil {
		return d, nil
	}
	if l, err := dp.nl.LinkByName(name); err == nil { // a predecessor's
		if vx, ok := l.(*netlink.Vxlan); ok && dp.opts.PinDir != "" && vx.FlowBased && vx.Port == int(port) {
			d = &tunDev{ifindex: l.Attrs().Index, port: port}
			if d.att, err = dp.attach(d.ifindex, dp.objs.TunnelIn, "tunnel_in"); err != nil {
				return nil, err
			}
			return d, nil
		}
		if err := dp.nl.LinkDel(l); err != nil {
			return nil, fmt.Errorf("remove stale %s: %w", name, err)
		}
	}
	link := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: name}, FlowBased: true, Port: int(port)}
	if err := dp.nl.LinkAdd(link); err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	l, err := dp.nl.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", name, err)
	}
	d = &tunDev{ifindex: l.Attrs().Index, port: port}
	fail := func(err error) (*tunDev, error) {
		_ = dp.nl.LinkDel(l)
		return nil, fmt.Errorf("set up %s: %w", name, err)
	}
	// The inner frames' size is the ports' business: the flow's MTU
	// check sends longer ones to the agent for a frag-needed answer.
	if err := dp.nl.LinkSetMTU(l, 65000); err != nil {
		return fail(err)
	}
	if err := dp.nl.LinkSetUp(l); err != nil {
		return fail(err)
	}
	if d.att, err = dp.attach(d.ifindex, dp.objs.TunnelIn, "tunnel_in"); err != nil {
		return fail(err)
	}
	return d, nil
}

func (dp *Datapath) removeDev(d *tunDev, name string) error {
	if err := dp.inNetns(func() error { return d.att.detach(dp.nl) }); err != nil {
		dp.log.Warn("datapath: detach tunnel_in", "err", err)
	}
	l, err := dp.nl.LinkByName(name)
	if err != nil {
		return nil // already gone
	}
	if err := dp.nl.LinkDel(l); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

func (dp *Datapath) syncPeers(old, next map[[4]byte]struct{}) error {
	for a := range old {
		if _, ok := next[a]; !ok {
			if err := dp.objs.Peers.Delete(*(*uint32)(unsafePointer(&a))); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("remove peer: %w", err)
			}
		}
	}
	for a := range next {
		if err := dp.objs.Peers.Put(*(*uint32)(unsafePointer(&a)), uint32(1)); err != nil {
			return fmt.Errorf("add peer: %w", err)
		}
	}
	return nil
}

// attachUnderlay puts underlay_in on the interface holding the local
// address.
func (dp *Datapath) attachUnderlay(t *tunnels, cfg datapath.TunnelConfig) error {
	ifindex := 0
	if cfg.VXLAN || cfg.GRE {
		addrs, err := dp.nl.AddrList(nil, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("list addresses: %w", err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == cfg.LocalIP {
				ifindex = a.LinkIndex
			}
		}
		if ifindex == 0 {
			return fmt.Errorf("local address %s is on no interface", cfg.LocalIP)
		}
	}
	if ifindex == t.ulIf {
		return nil
	}
	if t.ul != nil {
		if err := dp.inNetns(func() error { return t.ul.detach(dp.nl) }); err != nil {
			return err
		}
		t.ul, t.ulIf = nil, 0
	}
	if ifindex == 0 {
		return nil
	}
	a, err := dp.attach(ifindex, dp.objs.UnderlayIn, "underlay_in")
	if err != nil {
		return err
	}
	t.ul, t.ulIf = a, ifindex
	return nil
}

// stateSockets opens the sockets SendState writes flow-state packets
// with: a UDP socket (its source port is any, as VXLAN's are) and a raw
// GRE socket that reads nothing.
func (dp *Datapath) stateSockets(t *tunnels, cfg datapath.TunnelConfig) error {
	if t.vxSock != nil && (!cfg.VXLAN || cfg.LocalIP != t.cfg.LocalIP) {
		t.vxSock.Close()
		t.vxSock = nil
	}
	if t.greSock != nil && (!cfg.GRE || cfg.LocalIP != t.cfg.LocalIP) {
		t.greSock.Close()
		t.greSock = nil
	}
	return dp.inNetns(func() error {
		if cfg.VXLAN && t.vxSock == nil {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(cfg.LocalIP, 0)))
			if err != nil {
				return fmt.Errorf("flow-state socket: %w", err)
			}
			t.vxSock = c
		}
		if cfg.GRE && t.greSock == nil {
			c, err := net.ListenIP("ip4:gre", &net.IPAddr{IP: cfg.LocalIP.AsSlice()})
			if err != nil {
				return fmt.Errorf("flow-state GRE socket: %w", err)
			}
			if err := dropAll(c); err != nil {
				c.Close()
				return fmt.Errorf("flow-state GRE socket: %w", err)
			}
			t.greSock = c
		}
		return nil
	})
}

// dropAll attaches a classic BPF filter that accepts nothing: a raw
// socket would otherwise queue a copy of every GRE packet.
func dropAll(c syscall.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		prog := unix.SockFprog{Len: 1, Filter: &[]unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: 0}}[0]}
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog)
	})
	return errors.Join(err, serr)
}

// release lets go of the tunnels without touching the kernel side, for
// a successor to adopt.
func (t *tunnels) release() error {
	var errs []error
	for _, a := range []*attachment{t.ul, vxAtt(t.vx)} {
		errs = append(errs, a.release())
	}
	if t.vxSock != nil {
		errs = append(errs, t.vxSock.Close())
	}
	if t.greSock != nil {
		errs = append(errs, t.greSock.Close())
	}
	*t = tunnels{}
	return errors.Join(errs...)
}

func vxAtt(d *tunDev) *attachment {
	if d == nil {
		return nil
	}
	return d.att
}

func (t *tunnels) close(dp *Datapath) error {
	var errs []error
	if t.ul != nil {
		errs = append(errs, dp.inNetns(func() error { return t.ul.detach(dp.nl) }))
	}
	if t.vx != nil {
		errs = append(errs, dp.removeDev(t.vx, vxlanName))
	}
	if t.vxSock != nil {
		errs = append(errs, t.vxSock.Close())
	}
	if t.greSock != nil {
		errs = append(errs, t.greSock.Close())
	}
	*t = tunnels{}
	return errors.Join(errs...)
}

// SendState implements datapath.Datapath.
func (dp *Datapath) SendState(peer netip.Addr, payload []byte) error {
	return dp.sendReserved("state", peer, payload, packet.StateTunnelKey, &dp.vxState, &dp.greState)
}

// SendProbe implements datapath.Datapath.
func (dp *Datapath) SendProbe(peer netip.Addr, payload []byte) error {
	return dp.sendReserved("probe", peer, payload, packet.ProbeTunnelKey, &dp.vxProbe, &dp.greProbe)
}

// sendReserved sends payload to a tunnel peer with a reserved key, from
// the agent's sockets (VXLAN if enabled, else GRE), counting it in vx or
// gre.
func (dp *Datapath) sendReserved(what string, peer netip.Addr, payload []byte, key uint32, vx, gre *stateCounters) error {
	peer = peer.Unmap()
	if !peer.Is4() {
		return fmt.Errorf("datapath: send %s: peer %q: only IPv4 underlays are supported", what, peer)
	}
	if len(payload) == 0 || len(payload) > 9000 {
		return fmt.Errorf("datapath: send %s: %d-byte payload", what, len(payload))
	}
	dp.mu.Lock()
	t := &dp.tun
	_, known := t.peers[peer.As4()]
	vxSock, greSock, port := t.vxSock, t.greSock, t.cfg.VXLANPort
	dp.mu.Unlock()
	if !known {
		return fmt.Errorf("datapath: send %s: %s is not a tunnel-zone peer", what, peer)
	}
	bp := execBufs.Get().(*[]byte)
	defer execBufs.Put(bp)
	if len(*bp) < 8+len(payload) {
		*bp = make([]byte, 8+len(payload))
	}
	buf := (*bp)[:8+len(payload)]
	var err error
	var c *stateCounters
	switch {
	case vxSock != nil:
		c = vx
		if _, err = packet.EncapVXLAN(buf, payload, key); err == nil {
			_, err = vxSock.WriteToUDPAddrPort(buf, netip.AddrPortFrom(peer, port))
		}
	case greSock != nil:
		c = gre
		if _, err = packet.EncapGRE(buf, payload, key); err == nil {
			_, err = greSock.WriteToIP(buf, &net.IPAddr{IP: peer.AsSlice()})
		}
	default:
		dp.drops.add(datapath.DropTunnelDisabled, 1)
		return fmt.Errorf("datapath: send %s: no tunnel enabled by SetTunnels", what)
	}
	if err != nil {
		dp.drops.add(datapath.DropTunnelTxError, 1)
		return fmt.Errorf("datapath: send %s to %s: %w", what, peer, err)
	}
	c.tx.Add(1)
	return nil
}

// sendGRE sends the frame buf[start:] to a.Underlay over GRE with the
// raw socket: the path of the frames the program cannot encapsulate
// itself. buf has room for the GRE header before start.
func (dp *Datapath) sendGRE(buf []byte, start int, a *flow.Action) error {
	dp.mu.Lock()
	sock := dp.tun.greSock
	dp.mu.Unlock()
	if sock == nil {
		dp.drops.add(datapath.DropTunnelDisabled, 1)
		return errors.New("GRE not enabled by SetTunnels")
	}
	if start < 8 {
		dp.drops.add(datapath.DropTunnelTxError, 1)
		return errors.New("no room for the GRE header")
	}
	inner := len(buf) - start
	hdr := buf[start-8 : start]
	binary.BigEndian.PutUint16(hdr[0:], 0x2000) // K
	binary.BigEndian.PutUint16(hdr[2:], packet.EtherTypeTEB)
	binary.BigEndian.PutUint32(hdr[4:], a.TunnelKey)
	if _, err := sock.WriteToIP(buf[start-8:], &net.IPAddr{IP: a.Underlay.Unmap().AsSlice()}); err != nil {
		dp.greTx.errors.Add(1)
		dp.drops.add(datapath.DropTunnelTxError, 1)
		return fmt.Errorf("GRE to %s: %w", a.Underlay, err)
	}
	dp.greTx.packets.Add(1)
	dp.greTx.bytes.Add(uint64(inner))
	return nil
}
