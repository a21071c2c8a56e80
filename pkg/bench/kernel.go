package bench

import "fmt"

// The kernel side of each case, built exactly as the baseline scripts in
// shared/baseline build them (case_b.sh, case_c.sh, case_e.sh): same
// devices, same sysctls, static FDB and neighbour entries, default
// offloads. Only the namespace names and the VM side's names differ.

// kernelBridge is baseline case B: a Linux bridge in a middle namespace,
// bridge-nf-call-* = 0 (pure L2).
func kernelBridge(l *lab) (*testbed, error) {
	tb := &testbed{side: SideKernel, kase: CaseBridge}
	mid, err := l.netns("kbr-mid")
	if err != nil {
		return tb, err
	}
	tb.nss = append(tb.nss, mid)
	if tb.src, err = vm(l, "kbr-vm1", mid, "tap1", "10.2.0.1/24", "", 0); err != nil {
		return tb, err
	}
	if tb.dst, err = vm(l, "kbr-vm2", mid, "tap2", "10.2.0.2/24", "", 0); err != nil {
		return tb, err
	}
	tb.nss = append(tb.nss, tb.src.NS, tb.dst.NS)
	if err := kernelL2(l, mid, "tap1", "tap2", tb.src.MAC, tb.dst.MAC); err != nil {
		return tb, err
	}
	tb.nextHop = tb.dst.MAC
	tb.rps = []nsDev{{mid, "tap1"}}
	return tb, kernelReady(l, tb)
}

// kernelL2 makes br0 in ns over ports a (towards macA) and b (towards macB)
// with STP off, bridge netfilter off and static FDB entries.
func kernelL2(l *lab, ns, a, b, macA, macB string) error {
	steps := [][]string{
		{"link", "add", "br0", "type", "bridge", "stp_state", "0"},
		{"link", "set", a, "master", "br0"},
		{"link", "set", b, "master", "br0"},
		{"link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := l.ip(ns, s...); err != nil {
			return err
		}
	}
	for _, k := range []string{"iptables", "ip6tables", "arptables"} {
		if err := l.sysctl(ns, "net.bridge.bridge-nf-call-"+k, "0"); err != nil {
			return err
		}
	}
	if _, err := l.exec(ns, "bridge", "fdb", "replace", macB, "dev", b, "master", "static"); err != nil {
		return err
	}
	_, err := l.exec(ns, "bridge", "fdb", "replace", macA, "dev", a, "master", "static")
	return err
}

// kernelRouter is baseline case C: IP forwarding in a router namespace, no
// netfilter rules, static neighbours; with nat, case D: nftables source NAT
// on the egress (conntrack on) to the same address pool as Nagare's rule.
func kernelRouter(l *lab, nat bool) (*testbed, error) {
	tb := &testbed{side: SideKernel, kase: CaseRouter}
	pre := "krt-"
	if nat {
		tb.kase, pre = CaseSNAT, "ksn-"
	}
	rt, err := l.netns(pre + "rt")
	if err != nil {
		return tb, err
	}
	tb.nss = append(tb.nss, rt)
	if tb.src, err = vm(l, pre+"vm1", rt, "tap1", "10.3.1.1/24", "10.3.1.254", 0); err != nil {
		return tb, err
	}
	if tb.dst, err = vm(l, pre+"vm2", rt, "tap2", "10.3.2.1/24", "10.3.2.254", 0); err != nil {
		return tb, err
	}
	tb.nss = append(tb.nss, tb.src.NS, tb.dst.NS)
	for _, s := range [][]string{
		{"addr", "add", "10.3.1.254/24", "dev", "tap1"},
		{"addr", "add", "10.3.2.254/24", "dev", "tap2"},
		{"neigh", "replace", tb.dst.IP, "lladdr", tb.dst.MAC, "dev", "tap2", "nud", "permanent"},
		{"neigh", "replace", tb.src.IP, "lladdr", tb.src.MAC, "dev", "tap1", "nud", "permanent"},
	} {
		if err := l.ip(rt, s...); err != nil {
			return tb, err
		}
	}
	if err := l.sysctl(rt, "net.ipv4.ip_forward", "1"); err != nil {
		return tb, err
	}
	if nat {
		ruleset := "table ip nagarebench { chain postrouting { type nat hook postrouting priority srcnat; policy accept; oifname \"tap2\" snat to " + snatPool + "; }; }"
		if _, err := l.exec(rt, "nft", ruleset); err != nil {
			return tb, fmt.Errorf("nft masquerade: %w", err)
		}
		for key, val := range snatUDPTimeouts {
			if err := l.sysctl(rt, "net.netfilter.nf_conntrack_"+key, val); err != nil {
				return tb, err
			}
		}
	}
	if tb.nextHop, err = l.mac(rt, "tap1"); err != nil {
		return tb, err
	}
	tb.rps = []nsDev{{rt, "tap1"}}
	return tb, kernelReady(l, tb)
}

// kernelVXLAN is baseline case E: per hypervisor a bridge over the VM's
// veth and a vxlan device (VNI 100) on a veth underlay; VM MTU 1450.
func kernelVXLAN(l *lab) (*testbed, error) {
	tb := &testbed{side: SideKernel, kase: CaseVXLAN}
	var hvs [2]string
	for i := range hvs {
		ns, err := l.netns(fmt.Sprintf("kvx-hv%d", i+1))
		if err != nil {
			return tb, err
		}
		hvs[i] = ns
		tb.nss = append(tb.nss, ns)
	}
	if err := underlay(l, hvs[0], hvs[1], "192.168.250"); err != nil {
		return tb, err
	}
	var err error
	if tb.src, err = vm(l, "kvx-vm1", hvs[0], "tap1", "10.5.0.1/24", "", 1450); err != nil {
		return tb, err
	}
	if tb.dst, err = vm(l, "kvx-vm2", hvs[1], "tap2", "10.5.0.2/24", "", 1450); err != nil {
		return tb, err
	}
	tb.nss = append(tb.nss, tb.src.NS, tb.dst.NS)
	for i, hv := range hvs {
		local, remote := fmt.Sprintf("192.168.250.%d", i+1), fmt.Sprintf("192.168.250.%d", 2-i)
		if err := l.ip(hv, "link", "add", "vx0", "type", "vxlan", "id", "100", "local", local, "remote", remote,
			"dstport", "4789", "dev", fmt.Sprintf("u%d", i+1)); err != nil {
			return tb, err
		}
		if err := l.ip(hv, "link", "set", "vx0", "up"); err != nil {
			return tb, err
		}
	}
	// On hv1 the local VM is behind tap1 and the remote one behind vx0; on
	// hv2 the other way round.
	if err := kernelL2(l, hvs[0], "tap1", "vx0", tb.src.MAC, tb.dst.MAC); err != nil {
		return tb, err
	}
	if err := kernelL2(l, hvs[1], "vx0", "tap2", tb.src.MAC, tb.dst.MAC); err != nil {
		return tb, err
	}
	tb.nextHop = tb.dst.MAC
	tb.rps = []nsDev{{hvs[0], "tap1"}}
	return tb, kernelReady(l, tb)
}

// kernelReady pings once across the path, as the baseline scripts do.
func kernelReady(l *lab, tb *testbed) error {
	if _, err := l.exec(tb.src.NS, "ping", "-c", "2", "-i", "0.2", "-W", "1", "-q", tb.dst.IP); err != nil {
		return fmt.Errorf("kernel %s: %s cannot ping %s: %w", tb.kase, tb.src.NS, tb.dst.IP, err)
	}
	return nil
}

// The SNAT case's settings, the same on both sides. The pool is off the
// destination's subnet (which reaches it through its default route, so no
// neighbour has to answer for 151 addresses). The pool (not one address, as
// masquerade would use) and the short UDP timeout keep the flow
// windows, which send up to a few hundred thousand new 5-tuples per second
// to one destination, measuring connection setup rather than the 64k ports
// of one address toward one destination running out; 262144 entries is the
// kernel's nf_conntrack_max here (not writable from a namespace).
const (
	snatPool       = "10.13.9.100-10.13.9.250"
	snatUDPTimeout = "1"
	snatMaxEntries = "262144"
)

var snatUDPTimeouts = map[string]string{"udp_timeout": snatUDPTimeout, "udp_timeout_stream": snatUDPTimeout}

// snatAgentFlags give the agent the kernel's bounds and timeouts.
var snatAgentFlags = []string{"--conntrack-max", snatMaxEntries, "--conntrack-zone-max", snatMaxEntries,
	"--conntrack-udp-timeout", snatUDPTimeout + "s", "--conntrack-udp-new-timeout", snatUDPTimeout + "s"}
