//go:build linux

package harness

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// VMConfig describes a VM namespace.
type VMConfig struct {
	MAC      string   // eth0's MAC
	Addrs    []string // CIDRs; none for a DHCP client
	Gateway  string   // IPv4 default route
	Gateway6 string   // IPv6 default route
	MTU      int      // eth0's MTU; default 1500
	Tap      string   // the tap's name in the hypervisor; default "tap-"+name
}

// VM is a namespace with eth0, whose veth peer Tap lives in Host's
// namespace, ready to be bound to a port.
type VM struct {
	Name string
	NS   *NS
	Tap  string // interface name in the hypervisor namespace ("tap-vm11")
	MAC  string
	Host *Hypervisor
	Addr string // first IPv4 address, without length
}

// AddVM creates a VM attached to hypervisor h. Its tap is up and not bound.
func (e *Env) AddVM(t testing.TB, h *Hypervisor, name string, cfg VMConfig) *VM {
	t.Helper()
	vm := &VM{Name: name, NS: newNS(t, e.Prefix+"-"+name), Tap: "tap-" + name, MAC: cfg.MAC, Host: h}
	if cfg.Tap != "" {
		vm.Tap = cfg.Tap
	}
	if len(vm.Tap) > 15 {
		t.Fatalf("tap name %q too long for an interface name", vm.Tap)
	}
	veth(t, vm.NS, "eth0", h.NS, vm.Tap)
	// The hypervisor's own stack stays off the VMs' wire (no router
	// solicitations or MLD from the tap).
	h.NS.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf."+vm.Tap+".disable_ipv6=1")
	h.NS.MustRun(t, "ip", "link", "set", vm.Tap, "up")
	if cfg.MAC != "" {
		vm.NS.MustRun(t, "ip", "link", "set", "eth0", "address", cfg.MAC)
	}
	if cfg.MTU != 0 {
		vm.NS.MustRun(t, "ip", "link", "set", "eth0", "mtu", strconv.Itoa(cfg.MTU))
	}
	// eth0 keeps its default offloads (checksum, TSO/GSO), as a VM's
	// virtio-net NIC does.
	for _, a := range cfg.Addrs {
		args := []string{"ip", "addr", "add", a, "dev", "eth0"}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		} else if vm.Addr == "" {
			vm.Addr, _, _ = strings.Cut(a, "/")
		}
		vm.NS.MustRun(t, args...)
	}
	vm.NS.MustRun(t, "ip", "link", "set", "eth0", "up")
	if cfg.Gateway != "" {
		vm.NS.MustRun(t, "ip", "route", "add", "default", "via", cfg.Gateway)
	}
	if cfg.Gateway6 != "" {
		vm.NS.MustRun(t, "ip", "-6", "route", "add", "default", "via", cfg.Gateway6)
	}
	return vm
}

// PingResult is what ping(8) printed.
type PingResult struct {
	Sent, Received int
	Output         string
}

// Ping runs ping in the VM: count probes every interval, each waiting up
// to a second; extra arguments go before the destination.
func (vm *VM) Ping(dst string, count int, interval string, extra ...string) PingResult {
	args := append([]string{"ping", "-n", "-c", strconv.Itoa(count), "-i", interval, "-W", "1"}, extra...)
	args = append(args, dst)
	out, _ := vm.NS.Command(context.Background(), args...).CombinedOutput()
	return parsePing(string(out))
}

// parsePing reads the summary of iputils' or busybox's ping.
func parsePing(out string) PingResult {
	r := PingResult{Output: out}
	for _, line := range strings.Split(r.Output, "\n") {
		if strings.Contains(line, "packets transmitted") {
			f := strings.Fields(line)
			if len(f) >= 4 {
				r.Sent, _ = strconv.Atoi(f[0])
				r.Received, _ = strconv.Atoi(f[3])
			}
		}
	}
	return r
}

// WaitPing waits until one ping from vm to dst is answered.
func (vm *VM) WaitPing(t testing.TB, dst string, timeout time.Duration, extra ...string) {
	t.Helper()
	var last PingResult
	err := Eventually(timeout, func() error {
		last = vm.Ping(dst, 1, "0.2", extra...)
		if last.Received == 1 {
			return nil
		}
		return fmt.Errorf("no answer")
	})
	if err != nil {
		t.Fatalf("%s cannot ping %s within %s:\n%s", vm.Name, dst, timeout, last.Output)
	}
}

// Background starts a command in the VM. It is killed at the end of the
// test unless it ended before.
func (vm *VM) Background(t testing.TB, args ...string) *Bg {
	t.Helper()
	return background(t, vm.NS, args...)
}

// Background starts a command in the namespace (a server on a network
// outside the cloud), killed at the end of the test.
func (ns *NS) Background(t testing.TB, args ...string) *Bg {
	t.Helper()
	return background(t, ns, args...)
}

func background(t testing.TB, ns *NS, args ...string) *Bg {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := ns.Command(ctx, args...)
	b := &Bg{done: make(chan struct{}), cancel: cancel}
	cmd.Stdout, cmd.Stderr = &b.out, &b.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start %v in %s: %v", args, ns.Name, err)
	}
	go func() { b.err = cmd.Wait(); close(b.done) }()
	t.Cleanup(b.Stop)
	return b
}

// Bg is a command running in the background.
type Bg struct {
	out    syncBuffer
	done   chan struct{}
	err    error
	cancel context.CancelFunc
}

// Wait waits for the command to end, at most timeout; it returns its exit
// error.
func (b *Bg) Wait(timeout time.Duration) error {
	select {
	case <-b.done:
		return b.err
	case <-time.After(timeout):
		b.Stop()
		return fmt.Errorf("still running after %s; killed", timeout)
	}
}

// Stop kills the command and waits for it.
func (b *Bg) Stop() { b.cancel(); <-b.done }

// Output is what the command printed so far (stdout and stderr).
func (b *Bg) Output() string { return b.out.String() }

type syncBuffer struct {
	mu sync.Mutex
	bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.Buffer.String()
}

// PingEvent is one line of `ping -D -O` output: a reply, an error answer
// (unreachable, frag needed) or a probe that got no answer.
type PingEvent struct {
	At    time.Time
	Seq   int
	Reply bool   // an echo reply from the destination
	Text  string // the line after the timestamp
}

// ParsePingTimeline reads the timestamped lines of `ping -D`.
func ParsePingTimeline(out string) []PingEvent {
	var evs []PingEvent
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "[") {
			continue
		}
		end := strings.IndexByte(line, ']')
		if end < 0 {
			continue
		}
		ts, err := strconv.ParseFloat(line[1:end], 64)
		if err != nil {
			continue
		}
		ev := PingEvent{At: time.Unix(0, int64(ts*1e9)), Text: strings.TrimSpace(line[end+1:])}
		if i := strings.Index(ev.Text, "icmp_seq="); i >= 0 {
			f := strings.FieldsFunc(ev.Text[i+len("icmp_seq="):], func(r rune) bool { return r < '0' || r > '9' })
			if len(f) > 0 {
				ev.Seq, _ = strconv.Atoi(f[0])
			}
		}
		ev.Reply = strings.Contains(ev.Text, " bytes from ") && strings.Contains(ev.Text, "time=")
		evs = append(evs, ev)
	}
	return evs
}
