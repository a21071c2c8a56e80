//go:build linux

package dptest

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// Offloads: VMs as real guests are. A Linux stack behind a veth (or a
// virtio-net NIC behind a tap) has checksum offload and TSO/GSO on by
// default, and hands the datapath frames with partial checksums and TCP
// super-frames of up to 64 KiB. These cases run real TCP connections
// between "VMs" whose interfaces keep those defaults — nothing here turns
// an offload off — through the datapath on one host, across two hosts
// over VXLAN and GRE, and through a NAT rewrite, and feed the datapath
// offload metadata that lies, through a tap as a guest would.

// testOffloads runs the offload cases. Offloads come from a kernel's
// network stack, so they run on the namespace fixture only: the in-memory
// datapath's VMs have none.
func testOffloads(t *testing.T, fx Fixture) {
	if _, ok := fx.(*netnsFixture); !ok {
		t.Skipf("%s: offloaded frames come from a kernel network stack; these cases run on datapaths of the kernel's interfaces", fx.Name())
	}
	for _, c := range []struct {
		name string
		fn   func(*testing.T, Fixture)
	}{
		{"SameHostTCP", testOffloadSameHost},
		{"NATTCP", testOffloadNAT},
		{"SegmentsFitFlowMTU", testOffloadFlowMTU},
		{"MissSegmentsSuperFrames", testOffloadMiss},
		{"TunnelTCP", testOffloadTunnels},
		{"HostileGuest", testOffloadHostile},
		{"MirrorTCP", testOffloadMirror},
	} {
		t.Run(c.name, func(t *testing.T) { c.fn(t, fx) })
	}
}

// netns returns the host's namespace (the namespace fixture's).
func (h *host) netns() *netnstest.NS { return h.env.(*netnsHost).ns }

// tcpVM is a VM with a real network stack: a namespace of its own whose
// eth0, offloads at their defaults, is the peer of a port bound on host h.
type tcpVM struct {
	t   *testing.T
	ns  *netnstest.NS
	cfg datapath.PortConfig
	mac packet.MAC
	ip  netip.Addr
}

// addTCPVM creates the VM: eth0 with mac, ip/24 and mtu; "t<name>" in the
// host is bound as a port.
func (h *host) addTCPVM(name string, index int32, key uint32, ip netip.Addr, mac packet.MAC, mtu int) *tcpVM {
	t := h.t
	t.Helper()
	ns := netnstest.New(t, h.name+"vm"+name)
	netnstest.Veth(t, h.netns(), "t"+name, ns, "eth0")
	ns.Run(t, "ip", "link", "set", "eth0", "address", mac.String(), "mtu", strconv.Itoa(mtu))
	ns.Run(t, "ip", "addr", "add", ip.String()+"/24", "dev", "eth0")
	cfg := datapath.PortConfig{PortID: "port-" + name, Index: index, Interface: "t" + name, TunnelKey: key}
	if err := h.dp.AddPort(cfg); err != nil {
		t.Fatalf("%s: AddPort(%+v): %v", h.name, cfg, err)
	}
	// Detach before the VM's namespace (and with it the port's veth) goes,
	// and first stop the scripts: a late segment of the other VM's
	// connection would otherwise be installed towards a port just removed.
	t.Cleanup(func() {
		h.miss.quiesce()
		_ = h.dp.RemovePort(cfg.PortID)
	})
	return &tcpVM{t: t, ns: ns, cfg: cfg, mac: mac, ip: ip}
}

// neighbor makes the VM resolve ip to mac without ARP, so that only the
// flows under test carry its traffic.
func (v *tcpVM) neighbor(ip netip.Addr, mac packet.MAC) {
	v.ns.Run(v.t, "ip", "neigh", "replace", ip.String(), "lladdr", mac.String(), "dev", "eth0", "nud", "permanent")
}

func (v *tcpVM) output() flow.Action {
	return flow.Action{Type: flow.ActOutput, Port: v.cfg.Index, PortID: v.cfg.PortID, Interface: v.cfg.Interface}
}

// listen starts a TCP server on the VM at port: each connection's bytes
// are hashed, and the SHA-256 is written back when the client closes its
// side, so a transfer checks both directions.
func (v *tcpVM) listen(port uint16) {
	var ln net.Listener
	err := v.ns.Do(func() (err error) {
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(v.ip, port).String())
		return err
	})
	if err != nil {
		v.t.Fatalf("listen on %s:%d: %v", v.ip, port, err)
	}
	var wg sync.WaitGroup
	v.t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(transferTimeout))
				h := sha256.New()
				if _, err := io.Copy(h, c); err == nil {
					_, _ = c.Write(h.Sum(nil))
				}
			}()
		}
	}()
}

const transferTimeout = 30 * time.Second

// transfer sends n random bytes from v to the server at to over a new TCP
// connection and checks the hash that comes back.
func (v *tcpVM) transfer(to netip.AddrPort, n int) error {
	data := make([]byte, n)
	if _, err := rand.Read(data); err != nil {
		return err
	}
	var c net.Conn
	err := v.ns.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", to.String(), 5*time.Second)
		return err
	})
	if err != nil {
		return fmt.Errorf("connect from %s to %s: %w", v.ip, to, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(transferTimeout))
	if _, err := c.Write(data); err != nil {
		return fmt.Errorf("send %d bytes from %s to %s: %w", n, v.ip, to, err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	got, err := io.ReadAll(c)
	if err != nil {
		return fmt.Errorf("read the hash back from %s: %w", to, err)
	}
	if want := sha256.Sum256(data); !bytes.Equal(got, want[:]) {
		return fmt.Errorf("%d bytes from %s to %s arrived damaged: hash %x, want %x", n, v.ip, to, got, want)
	}
	return nil
}

// superFrames checks that port's traffic came in super-frames: more bytes
// per frame than the MTU allows for a single one. It is what proves the
// VM's offloads were on and the datapath took GSO frames whole.
func superFrames(t *testing.T, dp datapath.Datapath, port string) {
	t.Helper()
	st := dp.Stats()
	p, _ := st.Port(port)
	if p.RxPackets == 0 || p.RxBytes/p.RxPackets <= 1518 {
		t.Errorf("port %s: %d frames, %d bytes: no GSO super-frames came from the VM's TCP stack", port, p.RxPackets, p.RxBytes)
	}
	t.Logf("port %s received %d frames, %d bytes on average", port, p.RxPackets, p.RxBytes/max(p.RxPackets, 1))
}

var (
	offA, offB = netip.MustParseAddr("10.88.0.1"), netip.MustParseAddr("10.88.0.2")
	offNAT     = netip.MustParseAddr("10.88.0.100") // the "public" address DNATed to B
)

// installBoth returns a script that installs and executes, for a miss on
// a port, the actions acts returns for it; tags go on every flow.
func installBoth(t *testing.T, dp datapath.Datapath, mtu int, tags []uint64, acts func(u *datapath.Upcall) []flow.Action) func(u *datapath.Upcall) {
	return func(u *datapath.Upcall) {
		a := acts(u)
		if err := dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: a, Tags: tags, MTU: mtu}); err != nil {
			t.Errorf("Install: %v", err)
		}
		if err := dp.Execute(u.InPort, u.Frame, a); err != nil {
			t.Errorf("Execute: %v", err)
		}
	}
}

// sameHostPair is two TCP VMs on one host, each one's flows outputting to
// the other.
func sameHostPair(t *testing.T, fx Fixture, name string, mtu int) (*host, *tcpVM, *tcpVM) {
	h := newHost(t, fx, name, datapath.FlowConfig{})
	a := h.addTCPVM("a", 1, 101, offA, macVM1, 1500)
	b := h.addTCPVM("b", 2, 102, offB, macVM2, 1500)
	a.neighbor(offB, macVM2)
	b.neighbor(offA, macVM1)
	h.miss.setScript(installBoth(t, h.dp, mtu, []uint64{1}, func(u *datapath.Upcall) []flow.Action {
		if u.InPort == a.cfg.Index {
			return []flow.Action{b.output()}
		}
		return []flow.Action{a.output()}
	}))
	return h, a, b
}

// testOffloadSameHost: bulk TCP both ways between two VMs on one host.
func testOffloadSameHost(t *testing.T, fx Fixture) {
	h, a, b := sameHostPair(t, fx, "ofs", 0)
	b.listen(5001)
	a.listen(5002)
	if err := a.transfer(netip.AddrPortFrom(offB, 5001), 8<<20); err != nil {
		t.Fatal(err)
	}
	if err := b.transfer(netip.AddrPortFrom(offA, 5002), 2<<20); err != nil {
		t.Fatal(err)
	}
	superFrames(t, h.dp, a.cfg.PortID)
	if st := h.dp.Stats(); len(offloadDrops(st)) > 0 {
		t.Errorf("honest offloaded traffic dropped: %v", st.Drops)
	}
}

// offloadDrops returns the drop counters of offload metadata and MTU.
func offloadDrops(st datapath.Stats) map[string]uint64 {
	m := map[string]uint64{}
	for r, n := range st.Drops {
		if len(r) > len(datapath.OffloadDropPrefix) && r[:len(datapath.OffloadDropPrefix)] == datapath.OffloadDropPrefix || r == datapath.DropRxOverMTU {
			m[r] = n
		}
	}
	return m
}

// testOffloadNAT: A connects to a "public" address that B's flows
// translate (DNAT of 10.88.0.100:80 to B:8080 and back), with partial
// checksums and super-frames in both directions.
func testOffloadNAT(t *testing.T, fx Fixture) {
	h := newHost(t, fx, "ofn", datapath.FlowConfig{})
	a := h.addTCPVM("a", 1, 101, offA, macVM1, 1500)
	b := h.addTCPVM("b", 2, 102, offB, macVM2, 1500)
	a.neighbor(offNAT, macRtr)
	b.neighbor(offA, macVM1)
	h.miss.setScript(installBoth(t, h.dp, 0, nil, func(u *datapath.Upcall) []flow.Action {
		if u.InPort == a.cfg.Index {
			return []flow.Action{{Type: flow.ActSetIPDst, Addr: offB}, {Type: flow.ActSetL4Dst, L4Port: 8080},
				{Type: flow.ActSetEthSrc, MAC: macRtr}, {Type: flow.ActSetEthDst, MAC: macVM2}, b.output()}
		}
		return []flow.Action{{Type: flow.ActSetIPSrc, Addr: offNAT}, {Type: flow.ActSetL4Src, L4Port: 80},
			{Type: flow.ActSetEthSrc, MAC: macRtr}, a.output()}
	}))
	b.listen(8080)
	if err := a.transfer(netip.AddrPortFrom(offNAT, 80), 8<<20); err != nil {
		t.Fatal(err)
	}
	superFrames(t, h.dp, a.cfg.PortID)
}

// testOffloadFlowMTU: flows whose MTU is the VMs' own (a simulation's
// frag-needed limit) keep hitting for super-frames whose segments fit it:
// the limit applies to segments, not to the 64 KiB super-frame, which is
// never on a wire.
func testOffloadFlowMTU(t *testing.T, fx Fixture) {
	h, a, b := sameHostPair(t, fx, "ofm", 1500)
	b.listen(5001)
	if err := a.transfer(netip.AddrPortFrom(offB, 5001), 8<<20); err != nil {
		t.Fatal(err)
	}
	superFrames(t, h.dp, a.cfg.PortID)
	// Every frame received is one hit or one miss. A super-frame taken
	// for over the MTU would have missed and been cut into segments looked
	// up one by one: more lookups than frames.
	st := h.dp.Stats()
	pa, _ := st.Port(a.cfg.PortID)
	pb, _ := st.Port(b.cfg.PortID)
	if rx := pa.RxPackets + pb.RxPackets; st.Hits+st.Misses > rx || st.Misses > 6 {
		t.Errorf("%d hits and %d misses for %d frames under flows of MTU 1500: super-frames were held to the MTU", st.Hits, st.Misses, rx)
	}
}

// testOffloadMiss: super-frames that miss (their flow was invalidated
// mid-stream) are cut into segments before the upcall, so the handler
// only ever sees frames the wire could carry, and the connection goes on.
func testOffloadMiss(t *testing.T, fx Fixture) {
	h, a, b := sameHostPair(t, fx, "ofx", 1500)
	b.listen(5001)
	stop := make(chan struct{})
	var invalidated atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Microsecond):
				invalidated.Add(int64(h.dp.Invalidate(1)))
			}
		}
	}()
	err := a.transfer(netip.AddrPortFrom(offB, 5001), 16<<20)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	superFrames(t, h.dp, a.cfg.PortID)
	upcalls, data, biggest := 0, 0, 0
	for {
		select {
		case u := <-h.miss.upcalls:
			upcalls++
			biggest = max(biggest, len(u.Frame))
			if len(u.Frame) > 1000 {
				data++
			}
			continue
		default:
		}
		break
	}
	if data == 0 {
		t.Fatalf("%d upcalls after %d invalidated flows, none of a data segment: the test did not make super-frames miss", upcalls, invalidated.Load())
	}
	if biggest > 1514 {
		t.Errorf("an upcall carried a %d-byte frame: a super-frame reached the handler uncut", biggest)
	}
	t.Logf("%d flows invalidated, %d upcalls (%d of data segments), largest upcalled frame %d bytes", invalidated.Load(), upcalls, data, biggest)
}

// testOffloadTunnels: bulk TCP between VMs on two hosts, over VXLAN and
// over GRE. Super-frames are cut into segments that fit the underlay —
// also for a VM whose MTU (1500) leaves no room for the encapsulation on
// a 1500-byte underlay, where the datapath cuts smaller than the VM's MSS.
func testOffloadTunnels(t *testing.T, fx Fixture) {
	for _, c := range []struct {
		name string
		kind packet.Tunnel
		mtu  int
	}{
		{"vxlan", packet.TunnelVXLAN, 1450},
		{"gre", packet.TunnelGRE, 1450},
		{"vxlan-vm-mtu-1500", packet.TunnelVXLAN, 1500},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t, fx)
			a := p.a.addTCPVM("a", 1, 101, offA, macVM1, c.mtu)
			b := p.b.addTCPVM("b", 2, 202, offB, macVM2, c.mtu)
			a.neighbor(offB, macVM2)
			b.neighbor(offA, macVM1)
			p.a.miss.setScript(installBoth(t, p.a.dp, 0, nil, func(*datapath.Upcall) []flow.Action {
				return []flow.Action{{Type: flow.ActEncap, Tunnel: c.kind, Underlay: underB, TunnelKey: b.cfg.TunnelKey, Port: b.cfg.Index, PortID: b.cfg.PortID}}
			}))
			p.b.miss.setScript(installBoth(t, p.b.dp, 0, nil, func(*datapath.Upcall) []flow.Action {
				return []flow.Action{{Type: flow.ActEncap, Tunnel: c.kind, Underlay: underA, TunnelKey: a.cfg.TunnelKey, Port: a.cfg.Index, PortID: a.cfg.PortID}}
			}))
			b.listen(5001)
			a.listen(5002)
			if err := a.transfer(netip.AddrPortFrom(offB, 5001), 8<<20); err != nil {
				t.Fatal(err)
			}
			if err := b.transfer(netip.AddrPortFrom(offA, 5002), 1<<20); err != nil {
				t.Fatal(err)
			}
			superFrames(t, p.a.dp, a.cfg.PortID)
			for _, h := range []*host{p.a, p.b} {
				if st := h.dp.Stats(); len(offloadDrops(st)) > 0 || st.Drop(datapath.DropTunnelTxError) > 0 {
					t.Errorf("%s: drops %v", h.name, st.Drops)
				}
			}
		})
	}
}

// testOffloadHostile: a guest behind a tap (how a hypervisor attaches a
// VM's virtio-net) writes frames whose virtio_net_hdr lies in ways the
// kernel lets through: each is dropped and counted by reason, nothing
// reaches another port, and the port and its neighbours keep working.
func testOffloadHostile(t *testing.T, fx Fixture) {
	h, a, b := sameHostPair(t, fx, "ofh", 0)
	b.listen(5001)
	tap := h.addTap("tap0", 9, 109)
	var frames atomic.Int64
	h.miss.setScript(func(u *datapath.Upcall) {
		if u.InPort == 9 {
			frames.Add(1)
			return // the honest frame below: seen, nothing installed
		}
		installBoth(t, h.dp, 0, []uint64{1}, func(u *datapath.Upcall) []flow.Action {
			if u.InPort == a.cfg.Index {
				return []flow.Action{b.output()}
			}
			return []flow.Action{a.output()}
		})(u)
	})

	// Linux's tap checks some of the header (csum offsets inside the
	// frame, TCPv6 only on IPv6) and lets these through.
	tcp4, gso4 := hostileTCP(false, 3000, 1000)
	tcp6, gso6 := hostileTCP(true, 3000, 1000)
	cases := []struct {
		what   string
		frame  []byte
		hdr    offload.Hdr
		reason string
	}{
		{"TCPv4 GSO on an IPv6 frame", tcp6, with(gso6, func(h *offload.Hdr) { h.GSOType = offload.GSOTCPv4 }), datapath.OffloadDrop(offload.ErrGSOMismatch)},
		{"GSO size 1: 3000 segments", tcp4, with(gso4, func(h *offload.Hdr) { h.GSOSize = 1 }), datapath.OffloadDrop(offload.ErrGSOSize)},
		{"GSO segments over the port's MTU", bigTCP(9000), with(gso4, func(h *offload.Hdr) { h.GSOSize = 4000 }), datapath.DropRxOverMTU},
		{"a 4000-byte frame on a 1500-byte port", bigTCP(4000 - 54), offload.Hdr{}, datapath.DropRxOverMTU},
	}
	want := map[string]uint64{}
	for _, c := range cases {
		if err := tap.write(c.hdr, c.frame); err != nil {
			t.Fatalf("%s: the kernel refused it already (%v): pick a lie it lets through", c.what, err)
		}
		want[c.reason]++
	}
	eventually(t, "hostile offload metadata counted by reason", func() (bool, string) {
		st := h.dp.Stats()
		got := offloadDrops(st)
		for r, n := range want {
			if got[r] != n {
				return false, fmt.Sprintf("%v, want %v", got, want)
			}
		}
		return len(got) == len(want), fmt.Sprintf("%v, want %v", got, want)
	})
	if n := frames.Load(); n != 0 {
		t.Errorf("%d hostile frames reached the miss handler", n)
	}
	// The port still works: an honest super-frame is cut and upcalled.
	if err := tap.write(gso4, tcp4); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an honest super-frame from the tap after the hostile ones", func() (bool, string) {
		return frames.Load() == 3, fmt.Sprintf("%d segments upcalled, want 3", frames.Load())
	})
	// And its neighbours were never disturbed.
	if err := a.transfer(netip.AddrPortFrom(offB, 5001), 4<<20); err != nil {
		t.Fatal(err)
	}
}

func with(h offload.Hdr, f func(*offload.Hdr)) offload.Hdr { f(&h); return h }

// hostileTCP builds a TCP super-frame from 10.88.0.9 to B with payload
// bytes, as a guest with TSO hands it over: partial checksum and header
// for gso_size mss.
func hostileTCP(v6 bool, payload, mss int) ([]byte, offload.Hdr) {
	et, ipLen := packet.EtherTypeIPv4, 20
	if v6 {
		et, ipLen = packet.EtherTypeIPv6, 40
	}
	f := make([]byte, 14+ipLen+20+payload)
	copy(f[0:6], macVM2[:])
	copy(f[6:12], macTap[:])
	binary.BigEndian.PutUint16(f[12:], et)
	ip := f[14:]
	var src, dst netip.Addr
	if v6 {
		src, dst = netip.MustParseAddr("fd88::9"), netip.MustParseAddr("fd88::2")
		binary.BigEndian.PutUint32(ip, 6<<28)
		binary.BigEndian.PutUint16(ip[4:], uint16(20+payload))
		ip[6], ip[7] = packet.IPProtoTCP, 64
		s, d := src.As16(), dst.As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	} else {
		src, dst = netip.MustParseAddr("10.88.0.9"), offB
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+20+payload))
		ip[6], ip[8], ip[9] = 0x40, 64, packet.IPProtoTCP
		s, d := src.As4(), dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip[:20]))
	}
	tcp := f[14+ipLen:]
	binary.BigEndian.PutUint16(tcp[0:], 40000)
	binary.BigEndian.PutUint16(tcp[2:], 5999)
	tcp[12], tcp[13] = 5<<4, packet.TCPAck
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	binary.BigEndian.PutUint16(tcp[16:], offload.Seed(src, dst, packet.IPProtoTCP, 20+payload))
	gso := offload.GSOTCPv4
	if v6 {
		gso = offload.GSOTCPv6
	}
	return f, offload.Hdr{Flags: offload.FlagNeedsCsum, GSOType: gso, HdrLen: uint16(14 + ipLen + 20),
		GSOSize: uint16(mss), CsumStart: uint16(14 + ipLen), CsumOffset: 16}
}

// bigTCP is an IPv4 TCP frame with payload bytes and a partial checksum.
func bigTCP(payload int) []byte {
	f, _ := hostileTCP(false, payload, 1)
	return f
}

// SuperFrame returns a TCP super-frame (IPv4 10.88.0.9 to 10.88.0.2, or
// IPv6) of payload bytes as a guest with checksum offload and TSO hands
// it over, and its virtio_net_hdr for segments of mss bytes.
func SuperFrame(v6 bool, payload, mss int) ([]byte, offload.Hdr) { return hostileTCP(v6, payload, mss) }

var macTap = packet.MAC{0x02, 0xd7, 0, 0, 0, 9}

// tapGuest is the guest end of a tap: frames written to it enter the
// host through the tap, with a virtio_net_hdr in front, as QEMU writes a
// virtio-net guest's frames.
type tapGuest struct {
	fd int
}

// addTap creates tap device name in the host (IFF_VNET_HDR, as QEMU opens
// it), binds it as a port and returns its guest end.
func (h *host) addTap(name string, index int32, key uint32) *tapGuest {
	t := h.t
	t.Helper()
	g := &tapGuest{fd: -1}
	err := h.netns().Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		g.fd = fd
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		return unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
	})
	if g.fd >= 0 {
		t.Cleanup(func() { unix.Close(g.fd) })
	}
	if err != nil {
		t.Fatalf("create tap %s: %v", name, err)
	}
	h.netns().Run(t, "ip", "link", "set", name, "up")
	cfg := datapath.PortConfig{PortID: "port-" + name, Index: index, Interface: name, TunnelKey: key}
	if err := h.dp.AddPort(cfg); err != nil {
		t.Fatalf("%s: AddPort(%+v): %v", h.name, cfg, err)
	}
	t.Cleanup(func() { _ = h.dp.RemovePort(cfg.PortID) }) // before the tap goes with its fd
	return g
}

func (g *tapGuest) write(hdr offload.Hdr, frame []byte) error {
	buf := make([]byte, offload.HdrLen+len(frame))
	hdr.Encode(buf)
	copy(buf[offload.HdrLen:], frame)
	_, err := unix.Write(g.fd, buf)
	return err
}
