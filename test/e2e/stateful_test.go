//go:build linux

package e2e

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/test/e2e/harness"
)

// Helpers of the stateful-services scenarios (nat_test.go,
// secgroup_test.go): TCP and HTTP servers and clients living in a
// namespace (sockets opened inside it with NS.Do keep their namespace), text
// captures with tcpdump, and raw frames sent from a VM.

// requireFlowState skips the test unless the agent keeps flow state
// (connection tracking, NAT bindings): without it the simulation
// translates nothing and ct_state and return-flow match nothing. The
// agent's --conntrack-zone-max flag came with the wiring.
func requireFlowState(t *testing.T) {
	t.Helper()
	harness.Require(t)
	help, _ := exec.Command(harness.Binaries.Agent, "--help").CombinedOutput()
	if !strings.Contains(string(help), "conntrack-zone-max") { // the flag package prints one dash
		t.Skip("skipping: nagare-agent keeps no flow state yet (no --conntrack-zone-max; branch flowstate not on main): NAT and return-flow cannot work")
	}
}

// env wraps an environment with a CLI shortcut that fails the test.
type env struct {
	*harness.Env
	t *testing.T
}

func (e env) cli(format string, args ...any) string {
	e.t.Helper()
	return e.MustCLI(e.t, format, args...)
}

// listen opens a listener inside ns; it is closed at the end of the test.
func listen(t *testing.T, ns *harness.NS, network, addr string) net.Listener {
	t.Helper()
	var l net.Listener
	err := ns.Do(func() error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// serveSeen serves TCP on addr inside ns: each connection is told the
// address its peer has as the server sees it ("10.81.14.1:40000\n"), then
// closed. This is what proves NAT from the receiving side.
func serveSeen(t *testing.T, ns *harness.NS, addr string) {
	t.Helper()
	l := listen(t, ns, "tcp4", addr)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", c.RemoteAddr())
			c.Close()
		}
	}()
}

// hold accepts connections on addr inside ns and keeps them open (reading
// until the peer closes), so that their state stays established.
func hold(t *testing.T, ns *harness.NS, addr string) {
	t.Helper()
	l := listen(t, ns, "tcp4", addr)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
}

// holdDial connects from ns to addr, retrying for a few seconds, and
// closes the connection at the end of the test.
func holdDial(t *testing.T, ns *harness.NS, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := harness.Eventually(10*time.Second, func() error {
		return ns.Do(func() error {
			var err error
			c, err = net.DialTimeout("tcp4", addr, 2*time.Second)
			return err
		})
	})
	if err != nil {
		t.Fatalf("TCP from %s to %s: %v", ns.Name, addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// serveSeenUDP answers every datagram on addr inside ns with the address
// its sender has as the server sees it.
func serveSeenUDP(t *testing.T, ns *harness.NS, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo([]byte(from.String()), from)
		}
	}()
}

// udpClient is a connected UDP socket opened in a namespace.
type udpClient struct{ net.Conn }

func dialUDP(t *testing.T, ns *harness.NS, addr string) udpClient {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() error {
		var err error
		c, err = net.Dial("udp4", addr)
		return err
	}); err != nil {
		t.Fatalf("udp socket in %s: %v", ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return udpClient{c}
}

// seen sends a datagram (again every 300 ms, up to timeout) and returns
// the server's answer: the sender's address as it saw it.
func (c udpClient) seen(timeout time.Duration) (string, error) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 100)
	for {
		if _, err := c.Write([]byte("who am i")); err != nil {
			return "", err
		}
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil {
			return string(buf[:n]), nil
		}
		if time.Now().After(deadline) {
			return "", err
		}
	}
}

// serveHTTP serves body over HTTP on addr inside ns.
func serveHTTP(t *testing.T, ns *harness.NS, addr, body string) {
	t.Helper()
	l := listen(t, ns, "tcp4", addr)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s (client %s)\n", body, r.RemoteAddr)
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
}

// dialSeen connects from ns to addr (a serveSeen server) and returns the
// local address of the connection and what the server saw.
func dialSeen(ns *harness.NS, addr string, timeout time.Duration) (local, seen string, err error) {
	var c net.Conn
	err = ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, timeout)
		return err
	})
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	b, err := io.ReadAll(io.LimitReader(c, 100))
	if err != nil {
		return c.LocalAddr().String(), "", err
	}
	return c.LocalAddr().String(), strings.TrimSpace(string(b)), nil
}

// mustDialSeen retries dialSeen for a few seconds (the topology reaches the
// agents through etcd) and fails the test if it never works.
func mustDialSeen(t *testing.T, ns *harness.NS, addr string) (local, seen string) {
	t.Helper()
	var err error
	e := harness.Eventually(10*time.Second, func() error {
		local, seen, err = dialSeen(ns, addr, 2*time.Second)
		if err == nil && seen == "" {
			err = errors.New("the server said nothing")
		}
		return err
	})
	if e != nil {
		t.Fatalf("TCP from %s to %s: %v", ns.Name, addr, e)
	}
	return local, seen
}

// hostOf strips the port of "a.b.c.d:port".
func hostOf(hp string) string {
	h, _, err := net.SplitHostPort(hp)
	if err != nil {
		return hp
	}
	return h
}

// textCapture is tcpdump printing packets as text (-l: line by line, so
// that what it printed before it is stopped is complete).
type textCapture struct{ bg *harness.Bg }

func startTextCapture(t *testing.T, vm *harness.VM, filter string) *textCapture {
	t.Helper()
	harness.Require(t, "tcpdump")
	bg := vm.Background(t, "tcpdump", "-i", "eth0", "-nn", "-l", "--immediate-mode", "-e", filter)
	err := harness.Eventually(10*time.Second, func() error {
		if strings.Contains(bg.Output(), "listening on") {
			return nil
		}
		return errors.New("tcpdump is not listening yet")
	})
	if err != nil {
		t.Fatalf("tcpdump in %s: %v\n%s", vm.Name, err, bg.Output())
	}
	return &textCapture{bg}
}

// stop ends the capture and returns the packet lines.
func (c *textCapture) stop() []string {
	time.Sleep(300 * time.Millisecond) // the last packets in flight
	c.bg.Stop()
	var pkts []string
	for _, line := range strings.Split(c.bg.Output(), "\n") {
		if strings.Contains(line, " > ") {
			pkts = append(pkts, line)
		}
	}
	return pkts
}

// ipEnds returns the source and destination ("addr" or "addr.port") of a
// tcpdump -nn -e line of an IPv4 packet.
func ipEnds(line string) (src, dst string, ok bool) {
	// "… ethertype IPv4 (0x0800), length 74: 10.81.14.1.40000 > 10.81.14.201.80: Flags [S], …"
	_, rest, found := strings.Cut(line, "ethertype IPv4 (0x0800), length ")
	if !found {
		return "", "", false
	}
	_, rest, found = strings.Cut(rest, ": ")
	if !found {
		return "", "", false
	}
	f := strings.Fields(rest)
	if len(f) < 3 || f[1] != ">" {
		return "", "", false
	}
	return f[0], strings.TrimSuffix(f[2], ":"), true
}

// addrOf strips the port tcpdump appends to an address ("10.0.0.1.80").
func addrOf(end string) string {
	if a, err := netip.ParseAddr(end); err == nil {
		return a.String()
	}
	if i := strings.LastIndexByte(end, '.'); i > 0 {
		return end[:i]
	}
	return end
}

// sources counts the IPv4 source addresses of captured packets.
func sources(lines []string) map[string]int {
	m := map[string]int{}
	for _, l := range lines {
		if src, _, ok := ipEnds(l); ok {
			m[addrOf(src)]++
		}
	}
	return m
}

// sendRaw sends Ethernet frames out of vm's eth0 with an AF_PACKET socket:
// the VM's stack cannot forge a source MAC or address, an attacker can.
func sendRaw(t *testing.T, vm *harness.VM, frames ...[]byte) {
	t.Helper()
	err := vm.NS.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		to := &unix.SockaddrLinklayer{Ifindex: ifi.Index}
		for _, f := range frames {
			if err := unix.Sendto(fd, f, 0, to); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("raw send from %s: %v", vm.Name, err)
	}
}

func hwMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func ethHdr(dst, src net.HardwareAddr, etype uint16) []byte {
	b := make([]byte, 14)
	copy(b, dst)
	copy(b[6:], src)
	binary.BigEndian.PutUint16(b[12:], etype)
	return b
}

func csum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ipv4Frame builds an Ethernet/IPv4 frame around an L4 payload whose
// checksum field (at csumOff, -1 for none) is filled in.
func ipv4Frame(dstMAC, srcMAC net.HardwareAddr, src, dst string, proto uint8, l4 []byte, csumOff int) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	ip := make([]byte, 20)
	ip[0], ip[8], ip[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], csum(ip, 0))
	if csumOff >= 0 {
		var ph uint32
		for i := 0; i < 4; i += 2 {
			ph += uint32(binary.BigEndian.Uint16(s[i:])) + uint32(binary.BigEndian.Uint16(d[i:]))
		}
		ph += uint32(proto) + uint32(len(l4))
		binary.BigEndian.PutUint16(l4[csumOff:], csum(l4, ph))
	}
	return append(append(ethHdr(dstMAC, srcMAC, 0x0800), ip...), l4...)
}

func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst string, sport, dport uint16, payload string) []byte {
	l4 := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(l4, sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	copy(l4[8:], payload)
	return ipv4Frame(dstMAC, srcMAC, src, dst, 17, l4, 6)
}

func tcpSYN(dstMAC, srcMAC net.HardwareAddr, src, dst string, sport, dport uint16) []byte {
	l4 := make([]byte, 20)
	binary.BigEndian.PutUint16(l4, sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint32(l4[4:], 0x1000+uint32(sport))
	l4[12], l4[13] = 5<<4, 0x02
	binary.BigEndian.PutUint16(l4[14:], 64240)
	return ipv4Frame(dstMAC, srcMAC, src, dst, 6, l4, 16)
}

// arpReply is an ARP reply telling target that senderIP is at senderMAC
// (sent from the Ethernet source ethSrc).
func arpReply(ethSrc, senderMAC net.HardwareAddr, senderIP string, targetMAC net.HardwareAddr, targetIP string) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b, 1)
	binary.BigEndian.PutUint16(b[2:], 0x0800)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 2)
	copy(b[8:], senderMAC)
	s, d := netip.MustParseAddr(senderIP).As4(), netip.MustParseAddr(targetIP).As4()
	copy(b[14:], s[:])
	copy(b[18:], targetMAC)
	copy(b[24:], d[:])
	return append(ethHdr(targetMAC, ethSrc, 0x0806), b...)
}

// udp6Frame builds an Ethernet/IPv6/UDP frame.
func udp6Frame(dstMAC, srcMAC net.HardwareAddr, src, dst string, sport, dport uint16, payload string) []byte {
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	l4 := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(l4, sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	copy(l4[8:], payload)
	return ipv6Frame(dstMAC, srcMAC, s, d, 17, 64, l4, 6)
}

// neighborAdvert is an unsolicited ICMPv6 neighbor advertisement (override
// set) claiming that target is at tll, sent from src.
func neighborAdvert(ethSrc net.HardwareAddr, src, target string, tll net.HardwareAddr) []byte {
	s, d, tg := netip.MustParseAddr(src).As16(), netip.MustParseAddr("ff02::1").As16(), netip.MustParseAddr(target).As16()
	icmp := make([]byte, 32)
	icmp[0] = 136
	icmp[4] = 0x20 // override
	copy(icmp[8:], tg[:])
	icmp[24], icmp[25] = 2, 1 // target link-layer address option
	copy(icmp[26:], tll)
	return ipv6Frame(hwMAC("33:33:00:00:00:01"), ethSrc, s, d, 58, 255, icmp, 2)
}

// ipv6Frame wraps the L4 message l4 of protocol proto in IPv6 and
// Ethernet headers, first writing its checksum (over the pseudo-header)
// at csumOff.
func ipv6Frame(dstMAC, srcMAC net.HardwareAddr, s, d [16]byte, proto, hopLimit uint8, l4 []byte, csumOff int) []byte {
	var ph uint32
	for i := 0; i < 16; i += 2 {
		ph += uint32(binary.BigEndian.Uint16(s[i:])) + uint32(binary.BigEndian.Uint16(d[i:]))
	}
	ph += uint32(len(l4)) + uint32(proto)
	binary.BigEndian.PutUint16(l4[csumOff:], csum(l4, ph))
	ip := make([]byte, 40)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
	ip[6], ip[7] = proto, hopLimit
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	return append(append(ethHdr(dstMAC, srcMAC, 0x86dd), ip...), l4...)
}

// parallelDial opens n connections at once from ns to addr and returns
// the server's view of each (serveSeen).
func parallelDial(t *testing.T, ns *harness.NS, addr string, n int) []string {
	t.Helper()
	seen := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, seen[i], errs[i] = dialSeen(ns, addr, 5*time.Second)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("connection %d from %s to %s: %v", i, ns.Name, addr, err)
		}
	}
	return seen
}

// traceOf runs `nagare trace` and returns its output, for failure reports.
func traceOf(e env, format string, args ...any) string {
	out, err := e.CLI("trace " + fmt.Sprintf(format, args...))
	if err != nil {
		return fmt.Sprintf("trace: %v", err)
	}
	return out
}
