//go:build linux

package dptest

import (
	"bufio"
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/afpacket"
	"github.com/nagare/nagare/pkg/datapath/memory"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/packet"
)

// For returns the fixture of a registered implementation: in-memory hosts
// for the in-memory datapath, real namespaces for the others.
func For(name string) Fixture {
	if name == memory.Name {
		return Memory()
	}
	return Namespaces(name, func(t *testing.T, cfg datapath.Config) datapath.Datapath {
		dp, err := datapath.New(name, cfg)
		if err != nil {
			t.Fatal(err)
		}
		return dp
	})
}

// Namespaces is the fixture of a datapath of the kernel's interfaces:
// every host is a network namespace, its VMs' ends in another, the
// underlay a veth between hosts. It needs root.
func Namespaces(name string, newDP Factory) Fixture { return &netnsFixture{name: name, newDP: newDP} }

type netnsFixture struct {
	name  string
	newDP Factory
}

func (f *netnsFixture) Name() string { return f.name }

func (f *netnsFixture) newHost(t *testing.T, name string, flows datapath.FlowConfig) (datapath.Datapath, hostEnv) {
	netnstest.RequireRoot(t)
	h := &netnsHost{ns: netnstest.New(t, name), vms: netnstest.New(t, name+"vm")}
	return f.newDP(t, datapath.Config{Netns: h.ns.Path, Flows: flows}), h
}

// joinUnderlay: a veth "ul" between the hosts' namespaces.
func (f *netnsFixture) joinUnderlay(t *testing.T, a, b hostEnv) {
	na, nb := a.(*netnsHost).ns, b.(*netnsHost).ns
	netnstest.Veth(t, na, "ul", nb, "ul")
	na.Run(t, "ip", "addr", "add", underA.String()+"/24", "dev", "ul")
	nb.Run(t, "ip", "addr", "add", underB.String()+"/24", "dev", "ul")
	nb.Run(t, "ip", "addr", "add", underBad.String()+"/24", "dev", "ul")
}

// netnsHost is a host namespace and the namespace of its VMs.
type netnsHost struct {
	ns, vms *netnstest.NS
}

// addInterface creates a veth pair ("t<name>" in the host, "v<name>" in
// the VM namespace) and opens the VM end.
func (h *netnsHost) addInterface(t *testing.T, name string) (string, vmEnd) {
	t.Helper()
	netnstest.Veth(t, h.ns, "t"+name, h.vms, "v"+name)
	io, err := afpacket.OpenInNetns(h.vms.Path, "v"+name, afpacket.Options{PollTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { io.Close() })
	return "t" + name, packetEnd{io}
}

// packetEnd is a VM end read and written with a raw AF_PACKET socket.
type packetEnd struct{ io *afpacket.Port }

func (e packetEnd) send(frames [][]byte) error {
	n, err := e.io.WriteBatch(frames)
	if err == nil && n != len(frames) {
		err = errors.New("short write")
	}
	return err
}

func (e packetEnd) recv(d time.Duration) ([]byte, error) {
	bufs, sizes := [][]byte{make([]byte, 9216)}, []int{0}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		n, err := e.io.ReadBatch(bufs, sizes)
		if errors.Is(err, afpacket.ErrTimeout) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 1 {
			return append([]byte(nil), bufs[0][:sizes[0]]...), nil
		}
	}
	return nil, nil
}

// sendRaw sends one tunnel datagram from host B's namespace to host A: a
// UDP datagram to A's VXLAN port, or a GRE packet from a raw socket.
func (h *netnsHost) sendRaw(t *testing.T, from netip.Addr, gre bool, data []byte) {
	t.Helper()
	err := h.ns.Do(func() error {
		var (
			c   net.Conn
			err error
		)
		if gre {
			c, err = net.DialIP("ip4:gre", &net.IPAddr{IP: from.AsSlice()}, &net.IPAddr{IP: underA.AsSlice()})
		} else {
			c, err = net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(underA, packet.DefaultVXLANPort)))
		}
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(data)
		return err
	})
	if err != nil {
		t.Fatalf("send raw tunnel packet from %s: %v", from, err)
	}
}

// capture reads frames arriving on the underlay interface.
type capture struct {
	io *afpacket.Port
}

func (h *netnsHost) capture(t *testing.T) wireCapture {
	t.Helper()
	io, err := afpacket.OpenInNetns(h.ns.Path, "ul", afpacket.Options{PollTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { io.Close() })
	return &capture{io}
}

// tunnelPacket returns the first captured packet of the given tunnel type,
// decoded (VXLAN on the default port).
func (c *capture) tunnelPacket(t *testing.T, kind packet.Tunnel) *wirePacket {
	t.Helper()
	bufs, sizes := [][]byte{make([]byte, 9216)}, []int{0}
	deadline := time.Now().Add(arriveTimeout)
	for time.Now().Before(deadline) {
		n, err := c.io.ReadBatch(bufs, sizes)
		if errors.Is(err, afpacket.ErrTimeout) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			continue
		}
		var p packet.Parsed
		p.Decode(append([]byte(nil), bufs[0][:sizes[0]]...))
		if p.Drop == packet.DropNone && p.Tunnel == kind {
			return &wirePacket{Src: p.SrcIP, Dst: p.DstIP, Key: p.TunnelID, GREProto: p.GREProto, Inner: p.Inner()}
		}
	}
	t.Fatalf("no %s packet captured on the underlay within %v", kind, arriveTimeout)
	return nil
}

// tcpdump is a running `tcpdump -c 1` whose first line is awaited.
type tcpdump struct {
	cmd  *exec.Cmd
	line chan string
}

// tcpdump starts tcpdump on the underlay for one tunnel packet, as an
// operator would check, or returns nil if tcpdump is not installed (the
// raw capture checks the same fields).
func (h *netnsHost) tcpdump(t *testing.T, kind packet.Tunnel) *tcpdump {
	t.Helper()
	if _, err := exec.LookPath("tcpdump"); err != nil {
		t.Log("tcpdump not installed; checking the wire with the raw capture only")
		return nil
	}
	filter := "udp port 4789"
	if kind == packet.TunnelGRE {
		filter = "ip proto 47"
	}
	cmd := exec.Command("ip", "netns", "exec", h.ns.Name, "tcpdump", "-nn", "-l", "-v", "-i", "ul", "-c", "1", filter)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// tcpdump says "listening on" once its capture is open.
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on") {
				close(ready)
				break
			}
		}
		for sc.Scan() {
		}
	}()
	select {
	case <-ready:
	case <-time.After(arriveTimeout):
		t.Fatal("tcpdump did not start listening")
	}
	d := &tcpdump{cmd: cmd, line: make(chan string, 1)}
	go func() {
		var all strings.Builder
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			all.WriteString(sc.Text())
			all.WriteByte(' ')
		}
		d.line <- all.String()
	}()
	return d
}

func (d *tcpdump) wait(t *testing.T) string {
	t.Helper()
	select {
	case l := <-d.line:
		return l
	case <-time.After(arriveTimeout):
		t.Fatal("tcpdump saw no tunnel packet")
		return ""
	}
}
