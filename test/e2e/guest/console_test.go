package guest

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestBoot boots a real guest (on QEMU's user-mode network, so no root or
// tap is needed) and drives it through its console.
func TestBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a QEMU guest")
	}
	if why := Available(); why != "" {
		t.Skip(why)
	}
	start := time.Now()
	img, err := Build(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if img.NoPVH != nil {
		t.Logf("booting the bzImage: %v", img.NoPVH)
	}
	built := time.Since(start)
	accel, why, err := ChooseAccel(t.Context(), img)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image of kernel %s built in %s; accelerator %s: %s", img.Release, built.Round(time.Millisecond), accel, why)
	p, err := Start(exec.Command(QEMU, Config{Name: "boot-test", Accel: accel, MAC: "52:54:00:12:34:56"}.Args(img)...), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("console:\n%s\nQEMU: %s", p.Console.Tail(40), p.Stderr())
		}
	})
	if err := p.Console.WaitReady(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("booted with %s in %s", accel, time.Since(p.Started).Round(10*time.Millisecond))

	out, err := p.Console.Run(t.Context(), 5*time.Second, "uname -r; cat /sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	if want := img.Release + "\n52:54:00:12:34:56\n"; out != want {
		t.Errorf("uname -r and eth0's MAC: %q, want %q", out, want)
	}
	out, err = p.Console.Run(t.Context(), 5*time.Second, "readlink /sys/class/net/eth0/device/driver")
	if err != nil || !strings.HasSuffix(out, "/virtio_net\n") {
		t.Errorf("eth0's driver: %q (%v), want virtio_net", out, err)
	}

	_, err = p.Console.Run(t.Context(), 5*time.Second, "echo some output; exit 3")
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Status != 3 || exit.Output != "some output\n" {
		t.Errorf("a command exiting 3: %v, want an ExitError with status 3 and its output", err)
	}
	begin := time.Now()
	_, err = p.Console.Run(t.Context(), time.Second, "sleep 30")
	if !errors.As(err, &exit) || exit.Status != 137 {
		t.Errorf("a command outliving its timeout: %v, want it killed (status 137)", err)
	}
	t.Logf("a 1 s timeout killed sleep 30 after %s", time.Since(begin).Round(10*time.Millisecond))
	if out, err := p.Console.Run(t.Context(), 5*time.Second, "echo still here"); err != nil || out != "still here\n" {
		t.Errorf("after a killed command: %q (%v)", out, err)
	}
	for _, bad := range []string{"", "echo a\necho b", strings.Repeat("x", 4000)} {
		if _, err := p.Console.Run(t.Context(), time.Second, bad); err == nil {
			t.Errorf("command %.20q: no error", bad)
		}
	}

	p.Stop()
	if _, err := p.Console.Run(t.Context(), time.Second, "true"); err == nil || !strings.Contains(err.Error(), "console closed") {
		t.Errorf("a command after QEMU ended: %v, want an error saying the console closed", err)
	}
}
