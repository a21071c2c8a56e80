//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// topo is the standard topology of these tests, built with the CLI:
//
//	       router0 (r)
//	10.0.1.1 / fd00:1::1      10.0.2.1 / fd00:2::1
//	       |                         |
//	bridge0 (net1)             bridge1 (net2)
//	  vm11 (hv1) 10.0.1.11       vm21 (hv1) 10.0.2.11
//	  vm12 (hv2) 10.0.1.12       vm22 (hv2) 10.0.2.12
//
// One VXLAN tunnel zone holds both hypervisors. Both bridges have a DHCP
// subnet with the VMs as fixed hosts. VMs have IPv6 addresses fd00:S::H
// too, and default routes via the router port of their subnet. Their MTU is
// the overlay's (underlay - 50), as DHCP would give them.
type topo struct {
	*harness.Env
	vm   map[string]*harness.VM
	port map[string]string // VM name → its port's alias ("bridge0:port2")
	// routes maps a destination prefix to its route's alias, rport to the
	// router port the route goes out of.
	routes, rport map[string]string
}

// vmSpec places the four VMs: name, subnet (1 or 2), host.
var vmSpecs = []struct {
	name   string
	subnet int
	host   int // 1 or 2; the address's last byte is 10+host
}{
	{"vm11", 1, 1}, {"vm12", 1, 2}, {"vm21", 2, 1}, {"vm22", 2, 2},
}

func vmMAC(subnet, host int) string { return fmt.Sprintf("02:00:0a:00:%02x:%02x", subnet, 10+host) }
func vmIP(subnet, host int) string  { return fmt.Sprintf("10.0.%d.%d", subnet, 10+host) }
func vmIP6(subnet, host int) string { return fmt.Sprintf("fd00:%d::%d", subnet, 10+host) }

// newTopology starts an environment with two hypervisors and builds the
// standard topology; it returns once every VM can ping its router port.
func newTopology(t *testing.T) *topo {
	t.Helper()
	return newTopologyWith(t, harness.Options{})
}

// newTopologyWith is newTopology in an environment with options (a
// server that authenticates, for one).
func newTopologyWith(t *testing.T, opts harness.Options) *topo {
	t.Helper()
	env := harness.New(t, opts)
	tp := &topo{Env: env, vm: map[string]*harness.VM{}, port: map[string]string{}, routes: map[string]string{}, rport: map[string]string{}}
	cli := func(format string, args ...any) string { t.Helper(); return env.MustCLI(t, format, args...) }

	cli("create tunnel-zone name tz type vxlan")
	for _, h := range env.Hosts {
		cli("tunnel-zone tzone0 add member host %s address %s", h.Alias, h.TunnelIP)
	}
	cli("create router name r")
	for s := 1; s <= 2; s++ {
		bridge := cli("create bridge name net%d", s)
		r4 := cli("router router0 add port address 10.0.%d.1 net 10.0.%d.0/24", s, s)
		r6 := cli("router router0 add port address fd00:%d::1 net fd00:%d::/64", s, s)
		for _, rp := range []string{r4, r6} {
			bp := cli("%s add port", bridgeCmd(bridge))
			cli("%s set peer %s", portCmd(bp), rp)
		}
		tp.rport[fmt.Sprintf("10.0.%d.0/24", s)], tp.rport[fmt.Sprintf("fd00:%d::/64", s)] = r4, r6
		tp.routes[fmt.Sprintf("10.0.%d.0/24", s)] = cli("router router0 add route dst 10.0.%d.0/24 port %s", s, r4)
		tp.routes[fmt.Sprintf("fd00:%d::/64", s)] = cli("router router0 add route dst fd00:%d::/64 port %s", s, r6)
		cli("%s add dhcp subnet 10.0.%d.0/24 gw 10.0.%d.1", bridgeCmd(bridge), s, s)
	}
	mtu := env.UnderlayMTU - 50
	for _, spec := range vmSpecs {
		h := env.Hosts[spec.host-1]
		vm := env.AddVM(t, h, spec.name, harness.VMConfig{
			MAC:      vmMAC(spec.subnet, spec.host),
			Addrs:    []string{vmIP(spec.subnet, spec.host) + "/24", vmIP6(spec.subnet, spec.host) + "/64"},
			Gateway:  fmt.Sprintf("10.0.%d.1", spec.subnet),
			Gateway6: fmt.Sprintf("fd00:%d::1", spec.subnet),
			MTU:      mtu,
		})
		bridge := fmt.Sprintf("bridge%d", spec.subnet-1)
		p := cli("bridge %s add port", bridge)
		cli("host %s add binding interface %s port %s", h.Alias, vm.Tap, p)
		cli("bridge %s dhcp subnet 10.0.%d.0/24 add host name %s mac %s address %s",
			bridge, spec.subnet, spec.name, vm.MAC, vmIP(spec.subnet, spec.host))
		tp.vm[spec.name] = vm
		tp.port[spec.name] = p
	}
	for _, spec := range vmSpecs {
		tp.vm[spec.name].WaitPing(t, fmt.Sprintf("10.0.%d.1", spec.subnet), 15*time.Second)
	}
	return tp
}

// bridgeCmd turns the alias "bridge0" into the object path "bridge bridge0".
func bridgeCmd(alias string) string { return "bridge " + alias }

// portCmd turns a composed alias "bridge0:port1" into the object path
// "bridge bridge0 port port1".
func portCmd(alias string) string {
	dev, port, ok := strings.Cut(alias, ":")
	if !ok {
		panic("not a composed port alias: " + alias)
	}
	kind := strings.TrimRight(dev, "0123456789")
	return fmt.Sprintf("%s %s port %s", kind, dev, port)
}

// portID returns the UUID of the port a composed alias names.
func (tp *topo) portID(t *testing.T, alias string) string {
	t.Helper()
	return tp.MustCLI(t, "%s show id", portCmd(alias))
}

// tunnelKey reads a port's tunnel key from the API (GET /api/v1/ports/{id}).
func (tp *topo) tunnelKey(t *testing.T, alias string) uint32 {
	t.Helper()
	var p struct {
		TunnelKey uint32 `json:"tunnel_key"`
	}
	if err := tp.Call("GET", "/api/v1/ports/"+tp.portID(t, alias), nil, &p); err != nil {
		t.Fatal(err)
	}
	if p.TunnelKey == 0 {
		t.Fatalf("port %s has no tunnel key", alias)
	}
	return p.TunnelKey
}

// mustPing pings count times (0.2 s apart) and fails unless every probe of
// a run is answered. A run with a loss is repeated once: the kernel's
// per-CPU backlog is shared by every namespace on the machine, and another
// test's burst can drop an unrelated probe; a broken path fails both runs.
func mustPing(t *testing.T, from *harness.VM, dst string, count int, extra ...string) {
	t.Helper()
	r := from.Ping(dst, count, "0.2", extra...)
	if r.Sent == count && r.Received == count {
		return
	}
	t.Logf("%s → %s: %d/%d answered; trying again:\n%s", from.Name, dst, r.Received, r.Sent, r.Output)
	if r = from.Ping(dst, count, "0.2", extra...); r.Sent != count || r.Received != count {
		t.Fatalf("%s → %s: %d/%d answered:\n%s", from.Name, dst, r.Received, r.Sent, r.Output)
	}
}
