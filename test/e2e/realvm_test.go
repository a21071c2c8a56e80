//go:build linux

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestRealVMs runs real guests: two QEMU VMs (Debian's kernel, busybox)
// whose virtio-net NICs are taps bound to Nagare ports on two hypervisors,
// as Nova attaches VMs, with the NICs' offloads at their defaults: the
// guests send partially checksummed TCP segments and TSO super-frames, as
// real VMs do. They get their network by DHCP, ping each other, and move
// an 8 MB file over TCP each way (sha256 checked) on one subnet, routed,
// and through MidoNet's one-box NAT recipe (vyattaOneBox).
//
//	web (hv1) on net20 (bridge1): 172.16.20.100
//	vm2 (hv2), its tap rebound from port to port between the scenarios:
//	  net20 (bridge1) 172.16.20.101: same subnet as web
//	  net21 (bridge2) 172.16.21.10: routed through router0
//	  external (bridge0) 10.81.14.1: the recipe's internet, which knows no
//	    inside address and reaches web through the port forward of
//	    10.81.14.201:80, while web reaches it masqueraded
func TestRealVMs(t *testing.T) {
	t.Parallel()
	harness.RequireGuests(t)
	e := newNATEnv(t)
	hv1, hv2 := e.Hosts[0], e.Hosts[1]
	vyattaOneBox(e)

	const webMAC, vm2MAC = "02:00:ac:10:14:64", "02:00:ac:10:14:65"
	webPort := e.cli("bridge bridge1 add port")
	vm2Ports := map[string]string{
		"net20": e.cli("bridge bridge1 add port"), "net21": e.cli("bridge bridge2 add port"), "external": e.cli("bridge bridge0 add port"),
	}
	// Bound before the VMs exist: QEMU makes the taps when it starts, as
	// libvirt does for Nova.
	webTap := harness.NovaTap(e.cli("%s show id", portCmd(webPort)))
	vm2Tap := harness.NovaTap(e.cli("%s show id", portCmd(vm2Ports["net20"])))
	e.cli("host %s add binding interface %s port %s", hv1.Alias, webTap, webPort)
	e.cli("host %s add binding interface %s port %s", hv2.Alias, vm2Tap, vm2Ports["net20"])
	web := e.StartGuest(t, hv1, "web", harness.GuestConfig{MAC: webMAC, Tap: webTap})
	vm2 := e.StartGuest(t, hv2, "vm2", harness.GuestConfig{MAC: vm2MAC, Tap: vm2Tap})

	// DHCP while they boot. The external network's subnet has no gateway:
	// the internet gets no route into the cloud.
	e.cli("bridge bridge1 add dhcp subnet 172.16.20.0/24 gw 172.16.20.1")
	e.cli("bridge bridge2 add dhcp subnet 172.16.21.0/24 gw 172.16.21.1")
	e.cli("bridge bridge0 add dhcp subnet 10.81.14.0/24 server 10.81.14.201")
	e.cli("bridge bridge1 dhcp subnet 172.16.20.0/24 add host name web mac %s address 172.16.20.100", webMAC)
	e.cli("bridge bridge1 dhcp subnet 172.16.20.0/24 add host name vm2 mac %s address 172.16.20.101", vm2MAC)
	e.cli("bridge bridge2 dhcp subnet 172.16.21.0/24 add host name vm2 mac %s address 172.16.21.10", vm2MAC)
	e.cli("bridge bridge0 dhcp subnet 10.81.14.0/24 add host name vm2 mac %s address 10.81.14.1", vm2MAC)

	web.WaitReady(t)
	vm2.WaitReady(t)
	t.Logf("guests up: web in %s, vm2 in %s; accelerator %s", web.BootTime.Round(10*time.Millisecond),
		vm2.BootTime.Round(10*time.Millisecond), harness.GuestAccel())
	files := map[*harness.Guest]string{}
	for _, g := range []*harness.Guest{web, vm2} {
		offloadsOn(t, g)
		files[g] = serveRandomFile(t, g)
	}
	checkLease(t, e, web, "172.16.20.100", "172.16.20.1")

	// vm2 on web's subnet, then on the other inside network.
	bound := "net20"
	for _, sc := range []struct{ name, net, ip, router string }{
		{"SameSubnet", "net20", "172.16.20.101", "172.16.20.1"},
		{"Routed", "net21", "172.16.21.10", "172.16.21.1"},
	} {
		t.Run(sc.name, func(t *testing.T) {
			if bound != sc.net {
				rebind(t, e, vm2, vm2Ports[sc.net])
				bound = sc.net
			}
			checkLease(t, e, vm2, sc.ip, sc.router)
			pingGuests(t, web, "172.16.20.100", vm2, sc.ip)
			fetch8MB(t, e, web, vm2, "http://172.16.20.100/f", files[web])
			fetch8MB(t, e, vm2, web, "http://"+sc.ip+"/f", files[vm2])
		})
	}

	t.Run("VyattaOneBox", func(t *testing.T) {
		rebind(t, e, vm2, vm2Ports["external"])
		inet := vm2
		checkLease(t, e, inet, "10.81.14.1", "")
		if routes := inet.MustRun(t, "ip route"); strings.Contains(routes, "172.16.") || strings.Contains(routes, "default") {
			t.Fatalf("the internet guest has routes into the cloud:\n%s", routes)
		}
		inet.WaitPing(t, "10.81.14.201", 15*time.Second) // the router's public address
		web.WaitPing(t, "10.81.14.1", 15*time.Second)    // masqueraded
		// The port forward: web's file to the internet, web's replies
		// leaving as 10.81.14.201:80.
		fetch8MB(t, e, web, inet, "http://10.81.14.201/f", files[web])
		// Masquerade: the internet's file to web, whose connection the
		// internet can only answer through 10.81.14.201.
		fetch8MB(t, e, inet, web, "http://10.81.14.1/f", files[inet])
	})
}

// offloadsOn checks that the guest's NIC negotiated checksum offload and
// TSO (virtio-net features CSUM, bit 0, and HOST_TSO4, bit 11): what it
// sends is partially checksummed and segmented by whoever receives it.
func offloadsOn(t *testing.T, g *harness.Guest) {
	t.Helper()
	f := strings.TrimSpace(g.MustRun(t, "cat /sys/class/net/eth0/device/features"))
	if len(f) < 12 || f[0] != '1' || f[11] != '1' {
		t.Fatalf("%s: virtio-net features %q: want CSUM (bit 0) and HOST_TSO4 (bit 11) negotiated, as a VM's NIC has them", g.Name, f)
	}
}

// serveRandomFile writes 8 MB of random bytes to /srv/f in the guest,
// serves /srv with busybox httpd on port 80, and returns the file's sha256.
func serveRandomFile(t *testing.T, g *harness.Guest) string {
	t.Helper()
	out := g.MustRun(t, "head -c 8388608 /dev/urandom > /srv/f && httpd -p 80 -h /srv && sha256sum /srv/f")
	sum, _, _ := strings.Cut(out, " ")
	if len(sum) != 64 {
		t.Fatalf("%s: sha256sum printed %q", g.Name, out)
	}
	return sum
}

// checkLease runs DHCP in the guest and checks the lease (address, the
// default router when router is not empty, else none; the overlay MTU) and
// that eth0 is configured with it.
func checkLease(t *testing.T, e env, g *harness.Guest, ip, router string) {
	t.Helper()
	l := g.DHCP(t)
	t.Logf("%s: %s", g.Name, l.Line)
	mtu := strconv.Itoa(e.UnderlayMTU - 50)
	if l.IP != ip || l.Mask != "24" || l.Router != router || l.MTU != mtu {
		t.Fatalf("%s: lease %q: want ip=%s mask=24 router=%s mtu=%s", g.Name, l.Line, ip, router, mtu)
	}
	if got := strings.TrimSpace(g.MustRun(t, "cat /sys/class/net/eth0/mtu")); got != mtu {
		t.Errorf("%s: eth0's MTU is %s after DHCP, want %s", g.Name, got, mtu)
	}
	addrs := g.MustRun(t, "ip -4 addr show dev eth0; ip route")
	if !strings.Contains(addrs, "inet "+ip+"/24 ") || (router != "") != strings.Contains(addrs, "default via "+router) {
		t.Errorf("%s: eth0 and routes after DHCP:\n%s\nwant %s/24 and a default route only via %q", g.Name, addrs, ip, router)
	}
}

// rebind moves the guest's tap to another port, as an operator would with
// the CLI.
func rebind(t *testing.T, e env, g *harness.Guest, port string) {
	t.Helper()
	e.cli("host %s delete binding interface %s", g.Host.Alias, g.Tap)
	e.cli("host %s add binding interface %s port %s", g.Host.Alias, g.Tap, port)
}

// pingGuests pings a → b and b → a: three probes each, all answered (a
// run with a loss is tried once more, as mustPing does).
func pingGuests(t *testing.T, a *harness.Guest, aAddr string, b *harness.Guest, bAddr string) {
	t.Helper()
	for _, c := range []struct {
		from *harness.Guest
		dst  string
	}{{a, bAddr}, {b, aAddr}} {
		c.from.WaitPing(t, c.dst, 15*time.Second)
		r := c.from.Ping(t, c.dst, 3)
		if r.Received != 3 {
			r = c.from.Ping(t, c.dst, 3)
		}
		if r.Sent != 3 || r.Received != 3 {
			t.Fatalf("%s → %s: %d/%d answered:\n%s", c.from.Name, c.dst, r.Received, r.Sent, r.Output)
		}
	}
}

// fetch8MB has client download the 8 MB file server serves at url (over
// TCP, with busybox wget) and checks its sha256. On failure it logs the
// guests' TCP counters (InCsumErrors: segments dropped for a bad
// checksum) and the agents' drop counters.
func fetch8MB(t *testing.T, e env, server, client *harness.Guest, url, sum string) {
	t.Helper()
	start := time.Now()
	// The guest kills wget after 20 s: the file takes a few seconds even
	// under TCG. (Debian's busybox-static wget has no -T: it crashes on it.)
	out, err := client.Run(t.Context(), 20*time.Second, "rm -f /tmp/in; wget -q -O /tmp/in "+url+" && sha256sum /tmp/in")
	took := time.Since(start)
	got, _, _ := strings.Cut(out, " ")
	if err == nil && got == sum {
		t.Logf("%s → %s (%s): 8 MB in %s, sha256 %s…", server.Name, client.Name, url, took.Round(10*time.Millisecond), sum[:16])
		return
	}
	var diag strings.Builder
	for _, g := range []*harness.Guest{server, client} {
		snmp, _ := g.Run(t.Context(), 10*time.Second, "grep -A1 '^Tcp:' /proc/net/snmp; ls -l /tmp/in 2>/dev/null")
		fmt.Fprintf(&diag, "%s TCP counters (%s):\n%s\n", g.Name, tcpCsumErrors(snmp), strings.TrimSpace(snmp))
	}
	for _, h := range e.Hosts {
		m, err := h.Metrics()
		if err != nil {
			fmt.Fprintf(&diag, "%s metrics: %v\n", h.Name, err)
			continue
		}
		for series, v := range m {
			if strings.Contains(series, "drops_total") && v > 0 {
				fmt.Fprintf(&diag, "%s %s %g\n", h.Name, series, v)
			}
		}
	}
	t.Errorf("%s → %s: TCP transfer of an 8 MB file from %s failed after %s (sha256 %q, want %s): %v\n%s",
		server.Name, client.Name, url, took.Round(10*time.Millisecond), got, sum, err, diag.String())
}

// tcpCsumErrors picks InCsumErrors out of /proc/net/snmp's Tcp lines.
func tcpCsumErrors(snmp string) string {
	var names, values []string
	for _, line := range strings.Split(snmp, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Tcp:" {
			if names == nil {
				names = f
			} else {
				values = f
			}
		}
	}
	for i, n := range names {
		if n == "InCsumErrors" && i < len(values) {
			return "InCsumErrors " + values[i]
		}
	}
	return "no InCsumErrors counter"
}
