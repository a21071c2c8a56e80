//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/test/e2e/harness"
)

// TestAgentGapKeepsForwarding: with the kernel datapath, a host's
// established flows forward while its agent is dead. An iperf3 UDP stream
// between two VMs on hv1 (routed: vm11 → router → vm21) runs while hv1's
// agent is killed (SIGKILL, as a crash), stays down for 5 s and starts
// again, adopting the pinned datapath; not one datagram may be lost. The
// userspace datapath dies with its agent, so the test runs on the kernel
// datapath only.
func TestAgentGapKeepsForwarding(t *testing.T) {
	tp := gapTopology(t)
	udpAcrossGap(t, tp.vm["vm11"], tp.vm["vm21"], tp.Host("hv1"))
}

// TestAgentGapAcrossHosts: the same across hosts (vm11 on hv1 → vm12 on
// hv2, over VXLAN), with the receiving host's agent killed and down for
// 5 s, then the sending host's. The dead agent's lease ends after 3 s; its
// peer keeps tunnelling to it, and accepting its tunnel packets, because
// its kernel datapath answers the peer's echo probes (pkg/agent/reach):
// not one datagram may be lost either way. The userspace datapath dies
// with its agent (its host is then rightly cut, TestAgentRestart), so the
// test runs on the kernel datapath only.
func TestAgentGapAcrossHosts(t *testing.T) {
	tp := gapTopology(t)
	client, server := tp.vm["vm11"], tp.vm["vm12"]
	// One after the other in this test, not in subtests: an agent
	// started in a subtest would stop at its end.
	for _, victim := range []*harness.Hypervisor{tp.Host("hv2"), tp.Host("hv1")} {
		peer := tp.Host("hv1")
		if victim == peer {
			peer = tp.Host("hv2")
		}
		kept := strings.Count(peer.AgentLog(), "its datapath answers: still reachable")
		udpAcrossGap(t, client, server, victim)
		// The peer knew the host's lease had ended, and kept it.
		if log := peer.AgentLog(); strings.Count(log, "its datapath answers: still reachable") == kept {
			t.Errorf("%s never found %s's lease ended with its datapath answering:\n%s", peer.Name, victim.Name, lastLines(log, 30))
		}
	}
}

// gapTopology is the agent-gap tests' topology, on the kernel datapath
// only: the userspace datapath dies with its agent.
func gapTopology(t *testing.T) *topo {
	if dp := harness.Datapath(); dp != "ebpf" {
		t.Skipf("datapath %s: only the kernel datapath forwards while its agent is down (NAGARE_E2E_DATAPATH=ebpf)", dp)
	}
	harness.Require(t, "iperf3", "nft")
	t.Parallel()
	return newTopology(t)
}

// udpAcrossGap runs an iperf3 UDP stream from client to server while
// victim's agent is killed (SIGKILL), stays down for 5 s and starts again,
// and fails the test if the datapath lost one datagram.
func udpAcrossGap(t *testing.T, client, server *harness.VM, victim *harness.Hypervisor) {
	t.Helper()
	client.WaitPing(t, server.Addr, 10*time.Second)
	server.Background(t, "iperf3", "-s", "-1", "-B", server.Addr)
	if err := harness.Eventually(10*time.Second, func() error {
		out, err := server.NS.Command(context.Background(), "ss", "-Hltn", "sport = :5201").Output()
		if err != nil || !strings.Contains(string(out), "5201") {
			return fmt.Errorf("iperf3 server not listening yet (%v): %q", err, out)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// 10 Mbit/s of 1000-byte datagrams (1,250/s) for 12 s: the gap is in
	// the middle, with established flows on both sides of it.
	arrived := countArrivals(t, client, server)
	before, clientBefore := readSNMP(t, server), readSNMP(t, client)
	dpBefore := datapathCounters(t, client.Host, server.Host)
	run := client.Background(t, "iperf3", "-u", "-c", server.Addr, "-b", "10M", "-l", "1000", "-t", "12", "-J", "--get-server-output")
	time.Sleep(3 * time.Second)
	victim.KillAgent()
	down := time.Now()
	time.Sleep(5 * time.Second)
	victim.StartAgent(t)
	t.Logf("%s's agent down for %.1fs", victim.Name, time.Since(down).Seconds())
	if err := run.Wait(30 * time.Second); err != nil {
		t.Fatalf("iperf3: %v\n%s", err, run.Output())
	}
	n := arrived()
	after := readSNMP(t, server)
	var res struct {
		End struct {
			Sent struct {
				Packets int `json:"packets"`
			} `json:"sum_sent"`
			Received struct {
				LostPackets int `json:"lost_packets"`
			} `json:"sum_received"`
		} `json:"end"`
		Error  string `json:"error"`
		Server string `json:"server_output_text"`
	}
	if err := json.Unmarshal([]byte(run.Output()), &res); err != nil {
		t.Fatalf("iperf3: bad JSON (%v):\n%s", err, run.Output())
	}
	sent := res.End.Sent.Packets
	if res.Error != "" || sent < 10000 {
		t.Fatalf("iperf3: error %q, %d datagrams sent:\n%s", res.Error, sent, run.Output())
	}
	// What the datapath delivered is what reached the receiver's stack
	// (countArrivals), not what iperf3 read: a full socket buffer when
	// the shared machine starves the server (Udp:InErrors) is not the
	// datapath's, and neither are the datagrams still queued when the
	// server closes its socket at the client's end of test, which no UDP
	// counter sees (Udp:InDatagrams counts reads). iperf3 counts neither
	// in what it sent nor in what it lost the datagram with which the
	// client opens the UDP stream.
	errs := after["Udp:InErrors"] - before["Udp:InErrors"]
	delivered := n - 1
	t.Logf("iperf3 UDP %s → %s across %s's agent gap: %d datagrams sent, %d reached %s's stack (%d of them over its socket buffer); iperf3 counts %d lost",
		client.Name, server.Name, victim.Name, sent, delivered, server.Name, errs, res.End.Received.LostPackets)
	if delivered != uint64(sent) {
		t.Errorf("%d datagrams sent, %d delivered: %d lost in the datapath while %s's agent was down or restarting; iperf3's server:\n%s",
			sent, delivered, int64(sent)-int64(delivered), victim.Name, res.Server)
		// Where the datagrams went: the datapaths' counters (the kernel's
		// survive the restart in the pinned maps, the agent side's start
		// again at 0), besides the agents' logs the harness prints.
		backlog := "unknown"
		if n, err := harness.BacklogDrops(); err == nil {
			backlog = strconv.FormatUint(n-dpBefore.backlog, 10)
		}
		t.Logf("the kernel's input backlog dropped %s packets meanwhile, anyone's", backlog)
		t.Logf("%s's IP, ICMP and UDP counters: %s", server.Name, readSNMP(t, server).diff(before))
		t.Logf("%s's: %s", client.Name, readSNMP(t, client).diff(clientBefore))
		for _, h := range dpBefore.hosts {
			t.Logf("%s's counters (before the stream → now):\n%s", h.Name, dpBefore.diff(t, h))
		}
	}
	mustPing(t, client, server.Addr, 3) // and new traffic after the restart
}

// dpCounters are the datapath metrics of the hosts a stream crosses, as
// they were before the gap.
type dpCounters struct {
	hosts   []*harness.Hypervisor
	before  map[*harness.Hypervisor]harness.Metrics
	backlog uint64 // the kernel's input backlog drops (harness.BacklogDrops)
}

// datapathCounters reads the datapath metrics of hosts (each once).
func datapathCounters(t *testing.T, hosts ...*harness.Hypervisor) dpCounters {
	t.Helper()
	c := dpCounters{before: map[*harness.Hypervisor]harness.Metrics{}}
	var err error
	if c.backlog, err = harness.BacklogDrops(); err != nil {
		t.Fatal(err)
	}
	for _, h := range hosts {
		if _, seen := c.before[h]; seen {
			continue
		}
		m, err := h.Metrics()
		if err != nil {
			t.Fatalf("metrics of %s: %v", h.Name, err)
		}
		c.hosts, c.before[h] = append(c.hosts, h), m
	}
	return c
}

// diff lists h's datapath and agent series (drops by reason, misses,
// simulation drops, installs) that changed since c was read, or why they
// could not be read now.
func (c dpCounters) diff(t *testing.T, h *harness.Hypervisor) string {
	t.Helper()
	now, err := h.Metrics()
	if err != nil {
		return fmt.Sprintf("metrics of %s: %v", h.Name, err)
	}
	before := c.before[h]
	var lines []string
	for k, v := range now {
		if !strings.HasPrefix(k, "nagare_datapath_") && !strings.HasPrefix(k, "nagare_agent_") {
			continue
		}
		if b := before[k]; b != v {
			lines = append(lines, fmt.Sprintf("%s %v → %v", k, b, v))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// countArrivals counts, in server's namespace, the UDP datagrams from
// client to iperf3's port that reach its stack: a netfilter counter at
// the input hook, past the datapath and IP, before the socket. It returns
// the function that reads the count.
func countArrivals(t *testing.T, client, server *harness.VM) func() uint64 {
	t.Helper()
	// Made afresh: TestAgentGapAcrossHosts streams twice to one server.
	rules := fmt.Sprintf(`table ip nagaregap
delete table ip nagaregap
table ip nagaregap {
	chain input {
		type filter hook input priority 0; policy accept;
		ip saddr %s udp dport 5201 counter
	}
}
`, client.Addr)
	nft := server.NS.Command(context.Background(), "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft in %s: %v\n%s", server.Name, err, out)
	}
	counter := regexp.MustCompile(`counter packets (\d+) bytes`)
	return func() uint64 {
		t.Helper()
		out := server.NS.MustRun(t, "nft", "list", "chain", "ip", "nagaregap", "input")
		m := counter.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no counter in %s's chain:\n%s", server.Name, out)
		}
		n, err := strconv.ParseUint(m[1], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// snmp is a namespace's IP, ICMP and UDP counters (/proc/net/snmp), as
// "Udp:InDatagrams".
type snmp map[string]uint64

// readSNMP reads vm's namespace's counters.
func readSNMP(t *testing.T, vm *harness.VM) snmp {
	t.Helper()
	out, err := vm.NS.Command(context.Background(), "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatalf("read %s's counters: %v", vm.Name, err)
	}
	c := snmp{}
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if names == nil || names[0] != f[0] {
			names = f // a header line: the next one has the values
			continue
		}
		for i, n := range names[1:] {
			if i+1 >= len(f) {
				break
			}
			v, err := strconv.ParseInt(f[i+1], 10, 64) // signed: Tcp: MaxConn is -1
			if err != nil {
				t.Fatalf("%s's counter %s%s: %v", vm.Name, names[0], n, err)
			}
			c[names[0]+n] = uint64(v)
		}
		names = nil
	}
	for _, k := range []string{"Udp:InDatagrams", "Udp:InErrors"} {
		if _, ok := c[k]; !ok {
			t.Fatalf("no %s in %s's /proc/net/snmp:\n%s", k, vm.Name, out)
		}
	}
	return c
}

// diff lists the counters that changed since before.
func (c snmp) diff(before snmp) string {
	var lines []string
	for k, v := range c {
		if b := before[k]; b != v {
			lines = append(lines, fmt.Sprintf("%s +%d", k, int64(v-b)))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, " ")
}
