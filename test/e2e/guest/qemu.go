package guest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Config is one guest's machine.
type Config struct {
	Name     string
	Accel    string // "kvm" or "tcg"
	MemoryMB int    // default 256 (two 8 MB files live in its RAM)
	Tap      string // the tap device of its NIC; QEMU's user-mode network when empty
	MAC      string // the NIC's MAC
}

// Args is the QEMU command line that boots img.
func (c Config) Args(img Image) []string {
	mem := c.MemoryMB
	if mem == 0 {
		mem = 256
	}
	args := []string{"-name", c.Name, "-nodefaults", "-no-user-config", "-display", "none", "-monitor", "none",
		"-accel", c.Accel, "-m", strconv.Itoa(mem), "-smp", "1",
		"-kernel", img.Kernel, "-initrd", img.Initrd, "-append", "console=ttyS0 quiet panic=-1", "-no-reboot",
		// The serial console is QEMU's stdio (see Console).
		"-chardev", "stdio,id=console,signal=off", "-serial", "chardev:console"}
	// As libvirt starts a Nova VM: a tap netdev by name, with virtio net
	// headers (QEMU's default where the kernel has them), and a
	// virtio-net-pci NIC with every offload feature it offers. No option
	// ROM: nothing boots from the network. Without a tap (trial boots, this
	// package's tests) the NIC is on QEMU's user-mode network.
	netdev := "user,id=net0"
	if c.Tap != "" {
		netdev = "tap,id=net0,ifname=" + c.Tap + ",script=no,downscript=no"
	}
	nic := "virtio-net-pci,netdev=net0,romfile="
	if c.MAC != "" {
		nic += ",mac=" + c.MAC
	}
	return append(args, "-netdev", netdev, "-device", nic)
}

// Process is a running QEMU whose serial console is Console.
type Process struct {
	Console *Console
	Started time.Time
	cmd     *exec.Cmd
	stderr  bytes.Buffer // QEMU's own messages; read once it has exited
	done    chan struct{}
}

// Start starts cmd, a QEMU command line from Config.Args (possibly wrapped,
// as in "ip netns exec NS qemu-system-x86_64 …"). log, when not nil, gets
// a copy of the console. Stop ends it; it also dies with the test process.
func Start(cmd *exec.Cmd, log io.Writer) (*Process, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	p := &Process{Console: NewConsole(stdin), cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = p.Console
	if log != nil {
		cmd.Stdout = io.MultiWriter(p.Console, log)
	}
	cmd.Stderr = &p.stderr
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", QEMU, err)
	}
	go func() {
		err := cmd.Wait() // after which nothing writes stderr
		p.Console.Close(fmt.Errorf("%s exited (%v): %s", QEMU, err, strings.TrimSpace(p.stderr.String())))
		close(p.done)
	}()
	return p, nil
}

// Exited reports whether QEMU has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stderr is what QEMU itself printed, once it has exited ("" before).
func (p *Process) Stderr() string {
	if !p.Exited() {
		return ""
	}
	return p.stderr.String()
}

// Stop kills QEMU and waits for it.
func (p *Process) Stop() {
	if !p.Exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// kvmProbeTimeout bounds the trial boot under KVM. Where KVM works a guest
// is up in about a second.
const kvmProbeTimeout = 6 * time.Second

// ChooseAccel picks QEMU's accelerator for img: "kvm" when a guest really
// boots with it, else "tcg"; why says what decided. NAGARE_E2E_ACCEL=kvm
// or tcg forces one. KVM is tried with a trial boot because /dev/kvm is
// not proof: on a nested hypervisor it can open and create VMs, yet hang
// a Linux guest right after the real-mode setup (as on this project's
// build machines).
func ChooseAccel(ctx context.Context, img Image) (accel, why string, err error) {
	switch forced := os.Getenv("NAGARE_E2E_ACCEL"); forced {
	case "kvm", "tcg":
		return forced, "NAGARE_E2E_ACCEL=" + forced, nil
	case "":
	default:
		return "", "", fmt.Errorf("NAGARE_E2E_ACCEL=%q: want kvm or tcg", forced)
	}
	if err := kvmUsable(); err != nil {
		return "tcg", err.Error(), nil
	}
	cmd := exec.Command(QEMU, Config{Name: "kvm-probe", Accel: "kvm"}.Args(img)...)
	p, err := Start(cmd, nil)
	if err != nil {
		return "", "", err
	}
	defer p.Stop()
	probeCtx, cancel := context.WithTimeout(ctx, kvmProbeTimeout)
	defer cancel()
	if err := p.Console.WaitReady(probeCtx); err != nil {
		if ctx.Err() != nil {
			return "", "", err // the caller gave up
		}
		return "tcg", fmt.Sprintf("/dev/kvm is there, but a guest did not boot with it within %s (%v)", kvmProbeTimeout, err), nil
	}
	return "kvm", fmt.Sprintf("a guest booted with KVM in %s", time.Since(p.Started).Round(10*time.Millisecond)), nil
}

// kvmUsable checks that /dev/kvm opens and creates a VM.
func kvmUsable() error {
	fd, err := unix.Open("/dev/kvm", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("no usable /dev/kvm: %w", err)
	}
	defer unix.Close(fd)
	const kvmGetAPIVersion, kvmCreateVM = 0xAE00, 0xAE01
	if v, err := unix.IoctlRetInt(fd, kvmGetAPIVersion); err != nil || v != 12 {
		return fmt.Errorf("/dev/kvm: API version %d (%v), want 12", v, err)
	}
	vm, err := unix.IoctlRetInt(fd, kvmCreateVM)
	if err != nil {
		return fmt.Errorf("/dev/kvm cannot create a VM: %w", err)
	}
	if err := unix.Close(vm); err != nil {
		return fmt.Errorf("/dev/kvm: close the trial VM: %w", err)
	}
	return nil
}
