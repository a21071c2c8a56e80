//go:build linux

package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/guest"
)

// Real guests: QEMU VMs (package guest) whose virtio-net NIC is a tap
// device in a hypervisor namespace, bound to a port like any VM's tap.

// guests is the image every guest of the test process boots, and the
// accelerator they use; both are prepared once, in the background.
var guests struct {
	once        sync.Once
	done        chan struct{}
	img         guest.Image
	accel, why  string
	prepareTime time.Duration
	err         error
}

// RequireGuests skips the test unless QEMU guests can run here (root,
// QEMU, the guest kernel and a static busybox: scripts/setup.sh installs
// them), and starts preparing them: the image is built and the
// accelerator chosen (a trial boot under KVM) while the test builds its
// environment. StartGuest waits for that.
func RequireGuests(t testing.TB) {
	t.Helper()
	Require(t, guest.QEMU)
	if why := guest.Available(); why != "" {
		t.Skip("skipping: " + why)
	}
	guests.once.Do(func() {
		guests.done = make(chan struct{})
		// Bounded: a build, then at most one trial boot with a deadline.
		go prepareGuests()
	})
}

func prepareGuests() {
	defer close(guests.done)
	start := time.Now()
	dir := filepath.Join(Binaries.Dir, "guest")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		guests.err = err
		return
	}
	if guests.img, guests.err = guest.Build(dir); guests.err != nil {
		return
	}
	guests.accel, guests.why, guests.err = guest.ChooseAccel(context.Background(), guests.img)
	guests.prepareTime = time.Since(start)
}

// GuestConfig describes a QEMU guest.
type GuestConfig struct {
	MAC string // its NIC's MAC (DHCP hosts are by MAC); required
	// Tap is the tap's name in the hypervisor. Nova names it "tap" and
	// the first 11 characters of the port's id (NovaTap).
	Tap      string
	MemoryMB int // default 256
}

// NovaTap is the tap Nova (os-vif) makes for a port: "tap" and the first
// 11 characters of its id.
func NovaTap(portID string) string { return "tap" + portID[:min(11, len(portID))] }

// Guest is a QEMU VM running on a hypervisor.
type Guest struct {
	Name     string
	Host     *Hypervisor
	Tap, MAC string
	Accel    string        // "kvm" or "tcg"
	BootTime time.Duration // QEMU start to the guest's console answering
	proc     *guest.Process
	console  string // the console log's file
}

// StartGuest starts a guest on hypervisor h and returns once its tap is up
// (the guest still boots: WaitReady). As when libvirt starts a Nova VM,
// QEMU creates the tap, which a binding may have named long before, and
// the tap is brought up with IPv6 off (the hypervisor's own stack stays
// off the VM's wire). QEMU is killed and the tap removed at the end of the
// test; on failure the end of the guest's console is logged.
func (e *Env) StartGuest(t testing.TB, h *Hypervisor, name string, cfg GuestConfig) *Guest {
	t.Helper()
	if guests.done == nil {
		t.Fatal("StartGuest without RequireGuests")
	}
	<-guests.done
	if guests.err != nil {
		t.Fatalf("cannot prepare guests: %v", guests.err)
	}
	if cfg.MAC == "" || cfg.Tap == "" || len(cfg.Tap) > 15 {
		t.Fatalf("guest %s: a MAC and a tap name of at most 15 characters are required (MAC %q, tap %q)", name, cfg.MAC, cfg.Tap)
	}
	g := &Guest{Name: name, Host: h, Tap: cfg.Tap, MAC: cfg.MAC, Accel: guests.accel,
		console: filepath.Join(e.dir, h.Name+"-"+name+".console")}
	log, err := os.Create(g.console)
	if err != nil {
		t.Fatal(err)
	}
	args := guest.Config{Name: name, Accel: guests.accel, MemoryMB: cfg.MemoryMB, Tap: cfg.Tap, MAC: cfg.MAC}.Args(guests.img)
	p, err := guest.Start(h.NS.Command(context.Background(), append([]string{guest.QEMU}, args...)...), log)
	if err != nil {
		log.Close()
		t.Fatal(err)
	}
	g.proc = p
	t.Cleanup(func() {
		p.Stop()
		if err := log.Close(); err != nil {
			t.Errorf("guest %s: console log: %v", name, err)
		}
		// QEMU's tap goes with QEMU; a tap of that name still there was
		// not QEMU's to take away.
		if _, err := h.NS.Run("ip", "link", "show", cfg.Tap); err == nil {
			if _, err := h.NS.Run("ip", "link", "del", cfg.Tap); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("guest %s on %s (%s), end of its console (%s):\n%s\nQEMU said: %s", name, h.Name, g.Accel, g.console,
				p.Console.Tail(60), strings.TrimSpace(p.Stderr()))
		}
	})
	err = Eventually(10*time.Second, func() error {
		if p.Exited() {
			return stop{fmt.Errorf("QEMU exited: %s", p.Stderr())}
		}
		_, err := h.NS.Run("ip", "link", "show", cfg.Tap)
		return err
	})
	if err != nil {
		t.Fatalf("guest %s: QEMU made no tap %s in %s: %v", name, cfg.Tap, h.Name, err)
	}
	h.NS.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf."+cfg.Tap+".disable_ipv6=1")
	h.NS.MustRun(t, "ip", "link", "set", cfg.Tap, "up")
	return g
}

// WaitReady waits until the guest has booted and answers on its console.
func (g *Guest) WaitReady(t testing.TB) {
	t.Helper()
	// TCG boots in a few seconds here; the machine may be busy.
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	if err := g.proc.Console.WaitReady(ctx); err != nil {
		t.Fatalf("guest %s: %v", g.Name, err)
	}
	g.BootTime = time.Since(g.proc.Started)
}

// GuestAccel says which accelerator the guests use and why, and how long
// building the image and choosing took (once per test process).
func GuestAccel() string {
	return fmt.Sprintf("%s (%s; image and choice took %s)", guests.accel, guests.why, guests.prepareTime.Round(10*time.Millisecond))
}

// Run runs a shell command line in the guest (see guest.Console.Run).
func (g *Guest) Run(ctx context.Context, timeout time.Duration, cmd string) (string, error) {
	return g.proc.Console.Run(ctx, timeout, cmd)
}

// MustRun runs a shell command line in the guest, at most 30 s, and fails
// the test unless it succeeds.
func (g *Guest) MustRun(t testing.TB, cmd string) string {
	t.Helper()
	out, err := g.Run(t.Context(), 30*time.Second, cmd)
	if err != nil {
		t.Fatalf("%s: %v", g.Name, err)
	}
	return out
}

// Ping runs busybox ping in the guest: count probes a second apart, each
// waited for at most a second.
func (g *Guest) Ping(t testing.TB, dst string, count int) PingResult {
	t.Helper()
	out, err := g.Run(t.Context(), time.Duration(count+5)*time.Second, fmt.Sprintf("ping -c %d -W 1 %s", count, dst))
	var exit *guest.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.Status == 1) { // 1: not every probe answered
		t.Fatalf("%s: ping %s: %v", g.Name, dst, err)
	}
	return parsePing(out)
}

// WaitPing waits until one ping from the guest to dst is answered.
func (g *Guest) WaitPing(t testing.TB, dst string, timeout time.Duration) {
	t.Helper()
	var last PingResult
	err := Eventually(timeout, func() error {
		if last = g.Ping(t, dst, 1); last.Received == 1 {
			return nil
		}
		return fmt.Errorf("no answer")
	})
	if err != nil {
		t.Fatalf("%s cannot ping %s within %s:\n%s", g.Name, dst, timeout, last.Output)
	}
}

// Lease is what the guest's DHCP client (busybox udhcpc) was given and
// configured eth0 with.
type Lease struct {
	IP, Mask, Router, MTU, Server string
	Line                          string // as the client script printed it
}

// DHCP runs udhcpc on eth0 (asking for the MTU option too), which
// configures the address, the default route and the MTU, and returns the
// lease.
func (g *Guest) DHCP(t testing.TB) Lease {
	t.Helper()
	out, err := g.Run(t.Context(), 30*time.Second, "udhcpc -i eth0 -f -q -n -t 10 -T 1 -O mtu -s /etc/udhcpc.sh")
	if err != nil {
		t.Fatalf("%s: no DHCP lease: %v", g.Name, err)
	}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "lease ") {
			continue
		}
		l := Lease{Line: line}
		for _, f := range strings.Fields(line)[1:] {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "ip":
				l.IP = v
			case "mask":
				l.Mask = v
			case "router":
				l.Router = v
			case "mtu":
				l.MTU = v
			case "server":
				l.Server = v
			}
		}
		return l
	}
	t.Fatalf("%s: udhcpc configured nothing:\n%s", g.Name, out)
	return Lease{}
}
