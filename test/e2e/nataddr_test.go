//go:build linux

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestARPForNATAddresses: a router answers ARP for the addresses it
// translates, with no flow state needed (the answer is the simulation's
// generated reply): a floating IP on an exterior uplink, and a floating IP
// and a VIP on an uplink behind an "external" bridge, whose ARP
// suppression answers them. An address nothing translates stays
// unanswered.
//
//	inet1 198.51.100.1 (hv2) -- router0:port0 198.51.100.2 (bound)
//	inet2 10.81.14.1 (hv1) -- external -- router0:port1 10.81.14.201
//	FIPs 198.51.100.10, 10.81.14.202 (dnat in pre-routing); VIP 10.81.14.210:80
func TestARPForNATAddresses(t *testing.T) {
	t.Parallel()
	e := newNATEnv(t)
	hv1, hv2 := e.Hosts[0], e.Hosts[1]
	e.cli("create router name r")
	e.cli("create bridge name external")
	up := e.cli("router router0 add port address 198.51.100.2 net 198.51.100.0/24")
	e.cli("router router0 add route dst 198.51.100.0/24 port %s", up)
	inet1 := e.AddVM(t, hv2, "inet1", harness.VMConfig{MAC: "02:00:c6:33:64:01", Addrs: []string{"198.51.100.1/24"}, MTU: e.UnderlayMTU - 50})
	e.cli("host %s add binding interface %s port %s", hv2.Alias, inet1.Tap, up)
	ext := e.link("router0", "bridge0", "10.81.14.201", "10.81.14.0/24")
	inet2 := e.vmOn(hv1, "bridge0", "inet2", "02:00:0a:51:0e:01", "10.81.14.1/24", "")

	e.cli("create chain name pre")
	e.cli("chain chain0 add rule dst 198.51.100.10 type dnat action accept target 10.0.0.10")
	e.cli("chain chain0 add rule dst 10.81.14.202 type dnat action accept target 10.0.0.10")
	e.cli("router router0 set infilter chain0")
	e.cli("create load-balancer name lb")
	e.cli("load-balancer lb0 add pool")
	e.cli("load-balancer lb0 add vip pool pool0 address 10.81.14.210 port 80")
	e.cli("router router0 set load-balancer lb0")

	inet1.WaitPing(t, "198.51.100.2", 15*time.Second)
	inet2.WaitPing(t, "10.81.14.201", 15*time.Second)
	macUp := e.cli("%s show mac", portCmd(up))
	macExt := e.cli("%s show mac", portCmd(ext))
	for _, c := range []struct {
		vm   *harness.VM
		addr string
		mac  string // "": must stay unresolved
	}{
		{inet1, "198.51.100.10", macUp},
		{inet2, "10.81.14.202", macExt},
		{inet2, "10.81.14.210", macExt},
		{inet1, "198.51.100.99", ""},
		{inet2, "10.81.14.99", ""},
	} {
		var out string
		timeout := 10 * time.Second
		if c.mac == "" {
			timeout = 2 * time.Second // a few ARP attempts; the answered ones came within one
		}
		err := harness.Eventually(timeout, func() error {
			c.vm.Ping(c.addr, 1, "0.2")
			out, _ = c.vm.NS.Run("ip", "neigh", "show", c.addr, "dev", "eth0")
			if !strings.Contains(out, "lladdr") {
				return fmt.Errorf("neighbor %q", strings.TrimSpace(out))
			}
			return nil
		})
		switch {
		case c.mac == "" && err == nil:
			t.Errorf("%s: ARP for untranslated %s answered: %s", c.vm.Name, c.addr, out)
		case c.mac != "" && err != nil:
			t.Errorf("%s: ARP for %s not answered: %v", c.vm.Name, c.addr, err)
		case c.mac != "" && !strings.Contains(out, c.mac):
			t.Errorf("%s: %s resolved to %q, want the router port's MAC %s", c.vm.Name, c.addr, out, c.mac)
		default:
			t.Logf("%s: %s: %s", c.vm.Name, c.addr, strings.TrimSpace(out))
		}
	}
}
