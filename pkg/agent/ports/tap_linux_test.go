package ports

import (
	"bytes"
	"context"
	"errors"
	"os"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/datapath/afpacket"
	"github.com/nagare/nagare/pkg/datapath/netnstest"
	"github.com/nagare/nagare/pkg/datapath/userspace"
	"github.com/nagare/nagare/pkg/flow"
)

// tapName is shaped as Nova names a VM's tap: "tap" and the port id's
// first 11 characters.
const tapName = "tap0123abcd-ef"

// openTap attaches to the tap device name in ns as QEMU does (TUNSETIFF
// on /dev/net/tun), which brings its carrier up; frames written to the
// file enter the interface, frames sent out of it are read from it.
func openTap(t *testing.T, ns *netnstest.NS, name string) *os.File {
	t.Helper()
	var f *os.File
	err := ns.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		var req [unix.IFNAMSIZ + 64]byte
		copy(req[:], name)
		*(*uint16)(unsafe.Pointer(&req[unix.IFNAMSIZ])) = unix.IFF_TAP | unix.IFF_NO_PI
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
			unix.Close(fd)
			return e
		}
		f = os.NewFile(uintptr(fd), name)
		return nil
	})
	if err != nil {
		t.Fatalf("attach to tap %s: %v", name, err)
	}
	return f
}

// tapFrame is a test frame (source MAC 02:d8:...), told apart by its tag.
func tapFrame(tag byte) []byte {
	b := frame(uint16(tag))
	b[6], b[7] = 0x02, 0xd8
	return b
}

// readTest returns the next test frame read from r within 5 s.
func readTest(t *testing.T, what string, read func(deadline time.Time) ([]byte, error)) []byte {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		b, err := read(deadline)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if len(b) >= 12 && b[6] == 0x02 && b[7] == 0xd8 {
			return b
		}
	}
	t.Fatalf("%s: no frame within 5 s", what)
	return nil
}

// TestTapLifecycle: a binding names a tap that a hypervisor creates after
// the binding, deletes and creates again (a VM reboot). With the real
// userspace datapath and the kernel's link events, the port attaches when
// the tap appears, detaches when it goes (its flows with it) and attaches
// again when it returns; traffic flows both ways each time. Needs root.
func TestTapLifecycle(t *testing.T) {
	netnstest.RequireRoot(t)
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skip("no /dev/net/tun")
	}
	ns, vms := netnstest.New(t, "tap"), netnstest.New(t, "tapvm")
	netnstest.Veth(t, ns, "tv", vms, "vv")
	vm, err := afpacket.OpenInNetns(vms.Path, "vv", afpacket.Options{PollTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	dp, err := userspace.New(datapath.Config{Netns: ns.Path})
	if err != nil {
		t.Fatal(err)
	}
	p := New(Config{HostID: host, Datapath: dp, Links: Netlink{Netns: ns.Path}, UnderlayMTU: 1500, Log: quiet, Resync: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	runs := make(chan error, 2)
	defer func() {
		cancel()
		for range 2 {
			if err := <-runs; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("run: %v", err)
			}
		}
	}()
	go func() {
		runs <- dp.Run(ctx, datapath.MissFunc(func(u *datapath.Upcall) {
			for id, idx := range p.Bindings().PortToDP {
				if id != u.PortID {
					acts := []flow.Action{{Type: flow.ActOutput, Port: idx, PortID: id}}
					_ = dp.Install(&datapath.FlowSpec{Key: u.Key, Actions: acts})
					_ = dp.Execute(u.InPort, u.Frame, acts)
				}
			}
		}))
	}()
	go func() { runs <- p.Run(ctx) }()
	f := &fixture{t: t, dp: nil, p: p}
	sync := func() { f.sync(port("p-tap", tapName, 11), port("p-vm", "tv", 12)) }
	attached := func(what string, want ...string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			got := p.Bindings().PortToDP
			s := dp.Stats()
			ok := len(got) == len(want) && len(s.Ports) == len(want)
			for _, id := range want {
				_, in := got[id]
				_, inDP := s.Port(id)
				ok = ok && in && inDP
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: attached %v, datapath ports %v; want %v", what, got, s.Ports, want)
			}
		}
	}
	traffic := func(what string, tap *os.File) {
		t.Helper()
		in := tapFrame(1)
		if _, err := tap.Write(in); err != nil {
			t.Fatalf("%s: write to the tap: %v", what, err)
		}
		got := readTest(t, what+": tap to VM", func(time.Time) ([]byte, error) {
			bufs, sizes := [][]byte{make([]byte, 2048)}, []int{0}
			n, err := vm.ReadBatch(bufs, sizes)
			if errors.Is(err, afpacket.ErrTimeout) || n == 0 {
				return nil, nil
			}
			return bufs[0][:sizes[0]], err
		})
		if !bytes.Equal(got, in) {
			t.Fatalf("%s: the VM got %x, want %x", what, got, in)
		}
		back := tapFrame(2)
		if _, err := vm.WriteBatch([][]byte{back}); err != nil {
			t.Fatal(err)
		}
		got = readTest(t, what+": VM to tap", func(deadline time.Time) ([]byte, error) {
			buf := make([]byte, 2048)
			if err := tap.SetReadDeadline(deadline); err != nil {
				return nil, err
			}
			n, err := tap.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return nil, nil
			}
			return buf[:n], err
		})
		if !bytes.Equal(got, back) {
			t.Fatalf("%s: the tap got %x, want %x", what, got, back)
		}
	}
	createTap := func() *os.File {
		t.Helper()
		ns.Run(t, "ip", "tuntap", "add", "dev", tapName, "mode", "tap")
		ns.Run(t, "sysctl", "-q", "-w", "net.ipv6.conf."+tapName+".disable_ipv6=1")
		ns.Run(t, "ip", "link", "set", tapName, "up")
		f := openTap(t, ns, tapName)
		// Attaching brings the carrier up, and the kernel activates the
		// tap's transmit queue a moment later (linkwatch), then reports
		// the link up; a frame sent to the tap before that is dropped by
		// the kernel (noop qdisc, the tap's tx_dropped), whatever sent
		// it. A guest's NIC is up long before its first frame.
		for deadline := time.Now().Add(5 * time.Second); ns.Run(t, "cat", "/sys/class/net/"+tapName+"/operstate") != "up"; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("tap %s: operstate not up 5 s after attaching", tapName)
			}
		}
		return f
	}

	sync()
	attached("bound before the tap exists", "p-vm")
	tap := createTap()
	attached("the tap appeared", "p-tap", "p-vm")
	traffic("first boot", tap)
	if s := dp.Stats(); s.Flows != 2 {
		t.Fatalf("%d flows after traffic both ways, want 2", s.Flows)
	}

	tap.Close()
	ns.Run(t, "ip", "tuntap", "del", "dev", tapName, "mode", "tap")
	attached("the tap was deleted", "p-vm")
	if s := dp.Stats(); s.Flows != 0 || s.FlowsRemoved != 2 {
		t.Fatalf("after the tap went: %d flows, %d removed; want its two flows removed", s.Flows, s.FlowsRemoved)
	}

	tap = createTap()
	defer tap.Close()
	attached("the tap returned", "p-tap", "p-vm")
	traffic("after the return", tap)
}
