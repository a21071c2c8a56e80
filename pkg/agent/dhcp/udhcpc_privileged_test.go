//go:build linux

package dhcp

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/netns"
	"github.com/nagare/nagare/pkg/packet"
)

// TestUDHCPC runs busybox's udhcpc, a real and strict client (it drops
// replies with a wrong IP or UDP checksum, a wrong xid or chaddr), in a
// network namespace behind a veth pair. On the host end a loop plays the
// agent's datapath: it reads the frames with an AF_PACKET socket, hands them
// to Handle and writes the replies back. The udhcpc script records what the
// client understood from the lease.
func TestUDHCPC(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and AF_PACKET")
	}
	for _, tool := range []string{"udhcpc", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (apt-get install -y udhcpc iproute2)", tool)
		}
	}
	srv := testServer(t)
	env := newVethEnv(t, srv)

	t.Run("fixed host, unicast replies", func(t *testing.T) {
		got := env.udhcpc(t, hostMAC)
		want := map[string]string{
			"ip": "10.0.0.5", "subnet": "255.255.255.0", "router": "10.0.0.1",
			"dns": "10.0.0.2 8.8.8.8", "mtu": "1450", "hostname": "vm5",
			"broadcast": "10.0.0.255", "serverid": "10.0.0.1", "lease": "86400",
			"staticroutes": "10.1.0.0/16 10.0.0.254 0.0.0.0/0 10.0.0.1",
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("udhcpc saw %s=%q, want %q", k, got[k], v)
			}
		}
	})
	t.Run("fixed host, broadcast flag", func(t *testing.T) {
		if got := env.udhcpc(t, hostMAC, "-B"); got["ip"] != "10.0.0.5" || got["mtu"] != "1450" {
			t.Errorf("udhcpc -B got %v", got)
		}
	})
	t.Run("pool client", func(t *testing.T) {
		mac := packet.MAC{0x02, 0x00, 0x00, 0x00, 0x42, 0x42}
		got := env.udhcpc(t, mac)
		a, err := netip.ParseAddr(got["ip"])
		if err != nil || !netip.MustParsePrefix("10.0.0.0/24").Contains(a) {
			t.Fatalf("pool client got ip=%q", got["ip"])
		}
		if l, _, ok := srv.Lease(mac); !ok || l != a {
			t.Errorf("server holds %v %v for the client, udhcpc has %v", l, ok, a)
		}
		if _, ok := got["hostname"]; ok {
			t.Errorf("pool client got a host name %q", got["hostname"])
		}
		// A second run asks again from scratch (udhcpc keeps no state): the
		// lease is sticky.
		if again := env.udhcpc(t, mac); again["ip"] != got["ip"] {
			t.Errorf("second run got %s, first %s", again["ip"], got["ip"])
		}
	})
	s := srv.Stats()
	if s.Offers < 4 || s.Acks < 4 || s.Naks != 0 {
		t.Errorf("stats %+v", s)
	}
	t.Logf("stats: offers %d acks %d drops %v", s.Offers, s.Acks, s.Drops)
}

type vethEnv struct {
	ns, hostIf, clientIf string
	dir                  string
}

// newVethEnv creates namespace and veth pair with a random name prefix,
// starts the responder loop on the host end, and removes everything in
// t.Cleanup, whatever happens in between.
func newVethEnv(t *testing.T, srv *Server) *vethEnv {
	var rnd [3]byte
	_, _ = rand.Read(rnd[:])
	id := hex.EncodeToString(rnd[:])
	e := &vethEnv{ns: "nagare-dhcp-" + id, hostIf: "ndh" + id + "h", clientIf: "ndh" + id + "c", dir: t.TempDir()}
	t.Cleanup(func() {
		// Deleting the namespace deletes the client end, and with it the
		// pair; the explicit delete covers a failure before the move.
		_ = exec.Command("ip", "link", "del", e.hostIf).Run()
		_ = netns.DeleteNamed(e.ns)
	})
	if _, err := netns.AddNamed(e.ns); err != nil {
		t.Fatal(err)
	}
	sh(t, "ip", "link", "add", e.hostIf, "type", "veth", "peer", "name", e.clientIf)
	sh(t, "ip", "link", "set", e.clientIf, "netns", e.ns)
	sh(t, "ip", "link", "set", e.hostIf, "up")

	ifi, err := net.InterfaceByName(e.hostIf)
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatalf("AF_PACKET socket: %v", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		t.Fatalf("bind %s: %v", e.hostIf, err)
	}
	// A receive timeout lets the loop notice that the test is over.
	tv := unix.Timeval{Usec: 100_000}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		close(stop)
		wg.Wait()
		unix.Close(fd)
	})
	wg.Go(func() {
		buf, out := make([]byte, 65536), make([]byte, MaxReplyLen)
		for {
			select {
			case <-stop:
				return
			default:
			}
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
					continue
				}
				t.Errorf("recvfrom: %v", err)
				return
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue // our own replies
			}
			m, ok := handle(srv, buf[:n], time.Now(), out)
			if !ok {
				continue
			}
			to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
			copy(to.Addr[:], out[:6])
			if err := unix.Sendto(fd, out[:m], 0, to); err != nil {
				t.Errorf("sendto: %v", err)
			}
		}
	})
	return e
}

// udhcpc sets the client's MAC, runs udhcpc until it has a lease and
// returns the variables its script saw on "bound".
func (e *vethEnv) udhcpc(t *testing.T, mac packet.MAC, flags ...string) map[string]string {
	t.Helper()
	sh(t, "ip", "-n", e.ns, "link", "set", e.clientIf, "down")
	sh(t, "ip", "-n", e.ns, "link", "set", e.clientIf, "address", mac.String())
	sh(t, "ip", "-n", e.ns, "link", "set", e.clientIf, "up")

	out := filepath.Join(e.dir, "lease-"+strings.ReplaceAll(mac.String(), ":", ""))
	_ = os.Remove(out)
	script := filepath.Join(e.dir, "script")
	body := "#!/bin/sh\n" +
		"# udhcpc runs this with the event in $1 and the lease in the environment.\n" +
		"[ \"$1\" = bound ] || exit 0\n" +
		"env | grep -E '^(ip|subnet|router|dns|mtu|staticroutes|hostname|broadcast|lease|serverid)=' > '" + out + ".tmp'\n" +
		"mv '" + out + ".tmp' '" + out + "'\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"netns", "exec", e.ns, "udhcpc", "-f", "-q", "-n", "-t", "5", "-T", "1",
		"-i", e.clientIf, "-s", script}, flags...)
	if b, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("udhcpc %v: %v\n%s", flags, err, b)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatalf("udhcpc exited without calling its script on bound: %v", err)
	}
	defer f.Close()
	vars := map[string]string{}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			vars[k] = strings.TrimSpace(v)
		}
	}
	return vars
}

func sh(t *testing.T, name string, args ...string) {
	t.Helper()
	if b, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, b)
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
