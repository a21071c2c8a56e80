package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/netns"
)

// lab owns the network namespaces and processes of one benchmark run and
// removes them on Close. Every namespace is named prefix+name, and the
// prefix carries the run's PID ("nbench1234-"), so a later run can tell the
// leftovers of a killed run from those of a live one and delete them.
type lab struct {
	prefix string
	logf   func(string, ...any)

	mu     sync.Mutex
	nss    []string
	procs  []*proc
	closed bool
}

// labPrefix starts every namespace name, followed by the run's PID.
const labPrefix = "nbench"

// newLab checks for root and the tools the lab drives, and deletes the
// namespaces of earlier runs whose process is gone.
func newLab(logf func(string, ...any)) (*lab, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the datapath benchmark needs root: it creates network namespaces and AF_PACKET sockets")
	}
	for _, c := range []string{"ip", "tc", "taskset", "sysctl"} {
		if _, err := exec.LookPath(c); err != nil {
			return nil, fmt.Errorf("%s not found: install iproute2, util-linux and procps (scripts/setup.sh)", c)
		}
	}
	l := &lab{prefix: fmt.Sprintf("%s%d-", labPrefix, os.Getpid()), logf: logf}
	l.removeStale()
	return l, nil
}

func (l *lab) removeStale() {
	for _, name := range netns.Orphans(labPrefix) {
		l.logf("removing namespace %s left by a run that died", name)
		if err := netns.DeleteNamed(name); err != nil {
			l.logf("%v", err)
		}
	}
}

// netns creates the namespace prefix+name with its loopback up and returns
// its full name.
func (l *lab) netns(name string) (string, error) {
	ns := l.prefix + name
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return "", errors.New("lab closed")
	}
	l.mu.Unlock()
	if _, err := netns.AddNamed(ns); err != nil {
		return "", err
	}
	l.mu.Lock()
	l.nss = append(l.nss, ns)
	l.mu.Unlock()
	return ns, nil
}

// ip runs `ip -n ns args...`.
func (l *lab) ip(ns string, args ...string) error {
	return run("ip", append([]string{"-n", ns}, args...)...)
}

// exec runs a command inside ns and returns its standard output.
func (l *lab) exec(ns string, args ...string) (string, error) {
	return output("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// veth links devA in nsA with devB in nsB, sets the MTU (0: default) and
// brings both ends up.
func (l *lab) veth(nsA, devA, nsB, devB string, mtu int) error {
	if err := run("ip", "link", "add", "name", devA, "netns", nsA, "type", "veth", "peer", "name", devB, "netns", nsB); err != nil {
		return err
	}
	for _, e := range [][2]string{{nsA, devA}, {nsB, devB}} {
		args := []string{"link", "set", "dev", e[1]}
		if mtu > 0 {
			args = append(args, "mtu", strconv.Itoa(mtu))
		}
		if err := l.ip(e[0], append(args, "up")...); err != nil {
			return err
		}
	}
	return nil
}

// sysctl sets key=val inside ns.
func (l *lab) sysctl(ns, key, val string) error {
	_, err := l.exec(ns, "sysctl", "-qw", key+"="+val)
	return err
}

// mac returns dev's MAC address.
func (l *lab) mac(ns, dev string) (string, error) {
	out, err := l.exec(ns, "cat", "/sys/class/net/"+dev+"/address")
	return strings.TrimSpace(out), err
}

// setRPS writes mask to every rx queue's rps_cpus of dev.
func (l *lab) setRPS(ns, dev string, mask int) error {
	_, err := l.exec(ns, "sh", "-c", fmt.Sprintf("for q in /sys/class/net/%s/queues/rx-*; do echo %x > $q/rps_cpus; done", dev, mask))
	return err
}

// devStats reads one interface's packet counters from /proc/net/dev as seen
// from inside ns: no process start, so a window's edges are read within
// microseconds of each other.
func (l *lab) devStats(ns, dev string) (rx, tx uint64, err error) {
	err = inNetns(ns, func() error {
		b, err := os.ReadFile("/proc/thread-self/net/dev")
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			name, rest, ok := strings.Cut(sc.Text(), ":")
			if !ok || strings.TrimSpace(name) != dev {
				continue
			}
			f := strings.Fields(rest)
			if len(f) < 10 {
				return fmt.Errorf("/proc/net/dev: short line for %s", dev)
			}
			rx, _ = strconv.ParseUint(f[1], 10, 64)
			tx, _ = strconv.ParseUint(f[9], 10, 64)
			return nil
		}
		return fmt.Errorf("no interface %s in namespace %s", dev, ns)
	})
	return rx, tx, err
}

// inNetns runs fn inside the lab namespace ns (netns.Do).
func inNetns(ns string, fn func() error) error { return netns.DoPath(netns.Path(ns), fn) }

// proc is a process the lab started. Its output is kept (the last 64 KiB)
// for error messages.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error
}

// start runs args inside ns (empty: the root namespace), pinned to cpus
// (empty: unpinned). `ip netns exec` and taskset exec the command, so the
// process's PID is the command's. The process dies with the lab.
func (l *lab) start(name, ns, cpus string, env []string, args ...string) (*proc, error) {
	var argv []string
	if ns != "" {
		argv = append(argv, "ip", "netns", "exec", ns)
	}
	if cpus != "" {
		argv = append(argv, "taskset", "-c", cpus)
	}
	argv = append(argv, args...)
	p := &proc{name: name, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Own process group: a Ctrl-C at the terminal reaches only us, and we
	// stop the children in order. Pdeathsig: they also die if we are killed.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errors.New("lab closed")
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	l.procs = append(l.procs, p)
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit, at most timeout, then kills it.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		p.stop()
		return fmt.Errorf("%s did not exit within %s", p.name, timeout)
	}
}

// stop sends SIGTERM, and SIGKILL if the process is still there after 5 s.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// forget drops an exited process from the lab's list.
func (l *lab) forget(p *proc) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, q := range l.procs {
		if q == p {
			l.procs = append(l.procs[:i], l.procs[i+1:]...)
			return
		}
	}
}

// pids returns the PIDs of the lab's live processes.
func (l *lab) pids() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []int
	for _, p := range l.procs {
		if !p.exited() {
			out = append(out, p.pid())
		}
	}
	return out
}

// pin sets the CPU affinity of every thread of pid. Threads the process
// creates later inherit it from their creator.
func pin(pid int, cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, _ := strconv.Atoi(t.Name())
		if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pin thread %d of %d: %w", tid, pid, err)
		}
	}
	return nil
}

// stopProcs stops the given processes, last started first.
func (l *lab) stopProcs(ps ...*proc) {
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop()
		l.forget(ps[i])
	}
}

// deleteNS deletes namespaces the lab made.
func (l *lab) deleteNS(nss ...string) {
	for _, ns := range nss {
		if err := netns.DeleteNamed(ns); err != nil {
			l.logf("cleanup: %v", err)
		}
		l.mu.Lock()
		for i, x := range l.nss {
			if x == ns {
				l.nss = append(l.nss[:i], l.nss[i+1:]...)
				break
			}
		}
		l.mu.Unlock()
	}
}

// Close stops every process and deletes every namespace. It is idempotent.
func (l *lab) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	procs, nss := l.procs, l.nss
	l.procs, l.nss = nil, nil
	l.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
	for i := len(nss) - 1; i >= 0; i-- {
		if err := netns.DeleteNamed(nss[i]); err != nil {
			l.logf("cleanup: %v", err)
		}
	}
}

func run(name string, args ...string) error {
	_, err := output(name, args...)
	return err
}

func output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
