//go:build linux

package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestBadInput sends malformed and unexpected traffic into the overlay —
// from a VM with an AF_PACKET socket, and into the tunnel endpoint from the
// underlay — and checks that the agent drops it, counts each drop under its
// reason (Prometheus metrics and the published datapath status), forwards
// what an L2 switch must forward, and keeps forwarding good traffic.
func TestBadInput(t *testing.T) {
	t.Parallel()
	tp := newTopology(t)
	vm11, vm12 := tp.vm["vm11"], tp.vm["vm12"]
	hv1 := tp.Host("hv1")
	vm11.WaitPing(t, vm12.Addr, 10*time.Second)
	vm11.WaitPing(t, "10.0.2.12", 10*time.Second)
	before, err := hv1.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	src, dst := mustMAC(vm11.MAC), mustMAC(vm12.MAC)
	srcIP, dstIP := netip.MustParseAddr(vm11.Addr), netip.MustParseAddr(vm12.Addr)
	const n = 50 // of each kind

	// reason → frames sent that must be counted under it.
	want := map[string]int{}
	t.Run("FromVM", func(t *testing.T) {
		good := ipv4UDP(src, dst, srcIP, dstIP, 64)
		cases := []struct {
			name, reason string
			frame        []byte
		}{
			{"truncated IPv4 header", "malformed-truncated", good[:14+10]},
			{"IHL 3", "malformed-bad-ihl", func() []byte { f := clone(good); f[14] = 0x43; return f }()},
			{"total length beyond the frame", "malformed-bad-ip-length", func() []byte {
				f := clone(good)
				binary.BigEndian.PutUint16(f[14+2:], 1400)
				fixIPChecksum(f[14:])
				return f
			}()},
			{"IPv4 ethertype, version 6", "malformed-bad-ip-version", func() []byte { f := clone(good); f[14] = 0x65; return f }()},
		}
		for _, c := range cases {
			sendFrames(t, vm11, c.frame, n)
			want[c.reason] += n
			t.Logf("sent %d frames: %s (%d bytes)", n, c.name, len(c.frame))
		}

		// Oversized: longer than the port's MTU (the underlay's, 1500).
		// Both veth ends must take it for it to reach the agent.
		hv1.NS.MustRun(t, "ip", "link", "set", vm11.Tap, "mtu", "9000")
		vm11.NS.MustRun(t, "ip", "link", "set", "eth0", "mtu", "9000")
		big := ipv4UDP(src, dst, srcIP, dstIP, 6000)
		sendFrames(t, vm11, big, n)
		want["rx-over-mtu"] += n
		t.Logf("sent %d frames of %d bytes", n, len(big))
		vm11.NS.MustRun(t, "ip", "link", "set", "eth0", "mtu", fmt.Sprint(tp.UnderlayMTU-50))
		hv1.NS.MustRun(t, "ip", "link", "set", vm11.Tap, "mtu", "1500")

		// An unknown ethertype is not malformed: a bridge forwards it.
		payload := []byte("nagare e2e: unknown ethertype 0x88b5")
		unknown := append(append(append(append([]byte{}, dst[:]...), src[:]...), 0x88, 0xb5), payload...)
		rx := listenEtherType(t, vm12, 0x88b5)
		sendFrames(t, vm11, unknown, 3)
		if got := rx.recv(t, 3*time.Second); !bytes.Contains(got, payload) {
			t.Errorf("vm12 did not receive the unknown-ethertype frame vm11 sent to it (got %q)", got)
		}
	})

	t.Run("FromUnderlay", func(t *testing.T) {
		inner := ipv4UDP(dst, src, dstIP, srcIP, 64) // as if from vm12 to vm11
		goodKey := tp.tunnelKey(t, tp.port["vm11"])
		hv1IP, hv2IP := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
		// From a tunnel-zone member (hv2's address, spoofed from the
		// underlay namespace) with a key that names no port.
		sendUnderlay(t, tp.Underlay, hv2IP, hv1IP, vxlan(0xabcde, inner), n)
		want["tunnel-unknown-key"] += n
		// From an address that is in no tunnel zone, with a good key.
		sendUnderlay(t, tp.Underlay, netip.MustParseAddr("10.99.0.254"), hv1IP, vxlan(goodKey, inner), n)
		want["tunnel-unknown-peer"] += n
		// From a member, with the VXLAN I flag clear.
		bad := vxlan(goodKey, inner)
		bad[0] = 0
		sendUnderlay(t, tp.Underlay, hv2IP, hv1IP, bad, n)
		want["tunnel-malformed"] += n
		// From a member, truncated inside the VXLAN header.
		sendUnderlay(t, tp.Underlay, hv2IP, hv1IP, vxlan(goodKey, inner)[:5], n)
		want["tunnel-malformed"] += n
	})

	t.Run("StillForwarding", func(t *testing.T) {
		mustPing(t, vm11, vm12.Addr, 5)
		mustPing(t, vm11, "10.0.2.12", 5)
		mustPing(t, tp.vm["vm22"], vm11.Addr, 5)
		for _, h := range tp.Hosts {
			if _, err := h.Metrics(); err != nil {
				t.Errorf("agent %s: %v", h.Name, err)
			}
		}
	})

	t.Run("DropCounters", func(t *testing.T) {
		after, err := hv1.Metrics()
		if err != nil {
			t.Fatal(err)
		}
		st, err := datapath(tp, hv1)
		if err != nil {
			t.Fatal(err)
		}
		for reason, n := range want {
			got := after.Label("nagare_datapath_drops_total", "reason", reason) - before.Label("nagare_datapath_drops_total", "reason", reason)
			t.Logf("hv1 nagare_datapath_drops_total{reason=%q}: +%v (sent %d)", reason, got, n)
			if got < float64(n) {
				t.Errorf("drops with reason %q: +%v, want ≥ %d", reason, got, n)
			}
		}
		// The published status carries the same counters (it may lag by
		// one publication: wait for it).
		err = harness.Eventually(6*time.Second, func() error {
			if st, err = datapath(tp, hv1); err != nil {
				return err
			}
			for reason, n := range want {
				if st.Drops[reason] < uint64(n) {
					return fmt.Errorf("status drops[%q] = %d, want ≥ %d (drops: %v)", reason, st.Drops[reason], n, st.Drops)
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		// And so does the operator's view.
		out := tp.MustCLI(t, "host %s show datapath", hv1.Alias)
		for reason := range want {
			if !strings.Contains(out, " "+reason+" ") {
				t.Errorf("host %s show datapath does not show drops of %q:\n%s", hv1.Alias, reason, out)
			}
		}
		var lines []string
		for k, v := range after {
			if strings.HasPrefix(k, "nagare_datapath_drops_total{") {
				lines = append(lines, fmt.Sprintf("%s %v", k, v))
			}
		}
		t.Logf("hv1 drop counters:\n%s", strings.Join(lines, "\n"))
	})
}

func mustMAC(s string) [6]byte {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		panic("bad MAC " + s)
	}
	return [6]byte(hw)
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// ipv4UDP builds an Ethernet/IPv4/UDP frame with payloadLen bytes of
// payload to port 9 (discard), checksums right.
func ipv4UDP(src, dst [6]byte, sip, dip netip.Addr, payloadLen int) []byte {
	f := make([]byte, 14+20+8+payloadLen)
	copy(f[0:], dst[:])
	copy(f[6:], src[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+payloadLen))
	copy(ip[12:], sip.AsSlice())
	copy(ip[16:], dip.AsSlice())
	fixIPChecksum(ip)
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+payloadLen))
	return f
}

func fixIPChecksum(ip []byte) {
	ip[10], ip[11] = 0, 0
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
}

// vxlan is a VXLAN header (I flag, vni) and the inner frame.
func vxlan(vni uint32, inner []byte) []byte {
	b := make([]byte, 8, 8+len(inner))
	b[0] = 0x08
	binary.BigEndian.PutUint32(b[4:], vni<<8)
	return append(b, inner...)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// sendFrames writes frame count times on the VM's eth0 with an AF_PACKET
// socket, as a misbehaving guest would.
func sendFrames(t *testing.T, vm *harness.VM, frame []byte, count int) {
	t.Helper()
	err := vm.NS.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0) // protocol 0: receives nothing
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(unix.ETH_P_ALL), Halen: 6}
		for i := 0; i < count; i++ {
			if err := unix.Sendto(fd, frame, 0, sa); err != nil {
				return fmt.Errorf("send %d-byte frame: %w", len(frame), err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", vm.Name, err)
	}
	time.Sleep(50 * time.Millisecond)
}

// sendUnderlay sends UDP datagrams to dst's VXLAN port from the underlay
// namespace with any source address (a raw socket writes the IP header).
func sendUnderlay(t *testing.T, ns *harness.NS, src, dst netip.Addr, payload []byte, count int) {
	t.Helper()
	pkt := make([]byte, 20+8+len(payload))
	pkt[0], pkt[8], pkt[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	copy(pkt[12:], src.AsSlice())
	copy(pkt[16:], dst.AsSlice())
	fixIPChecksum(pkt)
	binary.BigEndian.PutUint16(pkt[20:], 45000)
	binary.BigEndian.PutUint16(pkt[22:], 4789)
	binary.BigEndian.PutUint16(pkt[24:], uint16(8+len(payload))) // checksum 0: none (IPv4)
	copy(pkt[28:], payload)
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrInet4{Addr: dst.As4()}
		for i := 0; i < count; i++ {
			if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("send from the underlay: %v", err)
	}
	time.Sleep(50 * time.Millisecond)
}

// etherListener receives frames of one ethertype in a VM.
type etherListener struct{ fd int }

func listenEtherType(t *testing.T, vm *harness.VM, etherType uint16) *etherListener {
	t.Helper()
	l := &etherListener{fd: -1}
	err := vm.NS.Do(func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(etherType)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(etherType)}); err != nil {
			unix.Close(fd)
			return err
		}
		l.fd = fd
		return nil
	})
	if err != nil {
		t.Fatalf("%s: listen for ethertype %#04x: %v", vm.Name, etherType, err)
	}
	t.Cleanup(func() { unix.Close(l.fd) })
	return l
}

// recv returns the first frame received within timeout (nil if none).
func (l *etherListener) recv(t *testing.T, timeout time.Duration) []byte {
	t.Helper()
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(l.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	n, _, err := unix.Recvfrom(l.fd, buf, 0)
	if err != nil {
		return nil
	}
	return buf[:n]
}
