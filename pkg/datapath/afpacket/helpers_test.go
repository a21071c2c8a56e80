//go:build linux

package afpacket

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"golang.org/x/sys/unix"
)

// Test frames use the IEEE local experimental EtherType, which no kernel
// protocol handler claims, so the stack drops them silently after the taps.
const etherTypeTest = 0x88b5

var (
	macA = []byte{0x02, 0x00, 0x00, 0x00, 0x0a, 0x01}
	macB = []byte{0x02, 0x00, 0x00, 0x00, 0x0b, 0x01}
)

// testFrame builds an Ethernet frame to macB carrying seq and n bytes of a
// pattern derived from seq, after optional VLAN tags (TPID, TCI pairs).
func testFrame(seq uint32, n int, tags ...uint16) []byte {
	f := append([]byte{}, macB...)
	f = append(f, macA...)
	for i := 0; i+1 < len(tags); i += 2 {
		f = binary.BigEndian.AppendUint16(f, tags[i])
		f = binary.BigEndian.AppendUint16(f, tags[i+1])
	}
	f = binary.BigEndian.AppendUint16(f, etherTypeTest)
	f = binary.BigEndian.AppendUint32(f, seq)
	for i := 0; len(f) < n; i++ {
		f = append(f, byte(seq)+byte(i))
	}
	return f
}

// frameSeq returns the sequence number of an untagged test frame.
func frameSeq(f []byte) (uint32, bool) {
	if len(f) < 18 || binary.BigEndian.Uint16(f[12:]) != etherTypeTest {
		return 0, false
	}
	return binary.BigEndian.Uint32(f[14:]), true
}

// vethPair is two namespaces joined by a veth pair, "a0" in A and "b0" in B.
type vethPair struct {
	A, B *netnstest.NS
}

const ifA, ifB = "a0", "b0"

func newVethPair(t testing.TB) vethPair {
	t.Helper()
	a := netnstest.New(t, "a")
	b := netnstest.New(t, "b")
	netnstest.Veth(t, a, ifA, b, ifB)
	return vethPair{a, b}
}

// jumbo sets both ends' MTU to 9000.
func (v vethPair) jumbo(t testing.TB) {
	t.Helper()
	v.A.Run(t, "ip", "link", "set", ifA, "mtu", "9000")
	v.B.Run(t, "ip", "link", "set", ifB, "mtu", "9000")
}

func openPort(t testing.TB, ns *netnstest.NS, ifname string, opts Options) *Port {
	t.Helper()
	p, err := OpenInNetns(ns.Path, ifname, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Errorf("close port: %v", err)
		}
	})
	return p
}

// rawSock is a plain AF_PACKET socket used as an independent sender, so
// receive tests do not depend on the code under test to transmit.
type rawSock struct {
	fd   int
	addr unix.SockaddrLinklayer
}

func openRaw(t testing.TB, ns *netnstest.NS, ifname string) *rawSock {
	t.Helper()
	s := &rawSock{fd: -1}
	err := ns.Do(func() error {
		// Protocol 0: send-only, the socket receives nothing.
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		ifr, err := unix.NewIfreq(ifname)
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
			return fmt.Errorf("ifindex of %s: %w", ifname, err)
		}
		s.addr = unix.SockaddrLinklayer{Ifindex: int(ifr.Uint32()), Halen: 6}
		return nil
	})
	if s.fd >= 0 {
		t.Cleanup(func() { unix.Close(s.fd) })
	}
	if err != nil {
		t.Fatalf("raw socket on %s in %s: %v", ifname, ns.Name, err)
	}
	return s
}

func (s *rawSock) send(t testing.TB, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		if err := unix.Sendto(s.fd, f, 0, &s.addr); err != nil {
			t.Fatalf("raw send of %d-byte frame: %v", len(f), err)
		}
	}
}

// readN reads frames into fresh copies until want have arrived or timeout.
func readN(t testing.TB, p *Port, want int, timeout time.Duration) [][]byte {
	t.Helper()
	bufs, sizes := makeBufs(64, 16<<10)
	var got [][]byte
	deadline := time.Now().Add(timeout)
	for len(got) < want && time.Now().Before(deadline) {
		n, err := p.ReadBatch(bufs, sizes)
		if err == ErrTimeout {
			continue
		}
		if err != nil {
			t.Fatalf("ReadBatch after %d frames: %v", len(got), err)
		}
		for i := range n {
			got = append(got, append([]byte(nil), bufs[i][:sizes[i]]...))
		}
	}
	return got
}

func makeBufs(n, size int) ([][]byte, []int) {
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = make([]byte, size)
	}
	return bufs, make([]int, n)
}

// sysfsCounter reads /sys/class/net/IF/statistics/NAME inside ns.
func sysfsCounter(t testing.TB, ns *netnstest.NS, ifname, name string) uint64 {
	t.Helper()
	out := ns.Run(t, "cat", "/sys/class/net/"+ifname+"/statistics/"+name)
	v, err := strconv.ParseUint(out, 10, 64)
	if err != nil {
		t.Fatalf("parse %s %s: %v", ifname, name, err)
	}
	return v
}

func TestMain(m *testing.M) {
	// The slot layout the ring code assumes (tp_mac at 76 for Ethernet with
	// a virtio_net_hdr, as af_packet.c computes it; checked against a live
	// kernel by TestOffloadMetadata).
	if minFrameSize != 64 || tp2HdrLen != 32 || slotOverhead != 76 {
		fmt.Fprintf(os.Stderr, "unexpected TPACKET_V2 layout: hdr %d, min frame %d, overhead %d\n", tp2HdrLen, minFrameSize, slotOverhead)
		os.Exit(1)
	}
	os.Exit(m.Run())
}
