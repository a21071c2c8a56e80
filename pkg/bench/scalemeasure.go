package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/nagare/nagare/internal/etcdcluster"
	"github.com/nagare/nagare/pkg/packet"
)

// samples creates the timed ports one at a time.
func (s *scaleRun) samples(res *ScaleResult) error {
	var api, local, peers, everyone []time.Duration
	all := make([]int, len(s.hosts))
	for i := range all {
		all[i] = i
	}
	npeers := 0
	for n := range s.cfg.Samples {
		i := s.cfg.Ports - s.cfg.Samples + n
		h, b := s.layout(i)
		id := uuid.NewString()
		s.watch.expect(id)
		t0 := time.Now()
		if err := s.createPort(i, id); err != nil {
			return err
		}
		api = append(api, time.Since(t0))
		var tl, tp time.Time
		for deadline := t0.Add(time.Minute); ; time.Sleep(200 * time.Microsecond) {
			if tl.IsZero() {
				tl, _ = s.watch.boundAt(id, h)
			}
			if tp.IsZero() {
				tp, _ = s.watch.seenBy(id, s.peers[b])
			}
			if !tl.IsZero() && !tp.IsZero() {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("sample port %d (host %s): bound %v, seen by its bridge's hosts %v, after a minute", i, s.hosts[h].name, !tl.IsZero(), !tp.IsZero())
			}
		}
		local, peers = append(local, tl.Sub(t0)), append(peers, tp.Sub(t0))
		npeers += len(s.peers[b])
		res.Traffic++
		if err := s.broadcastReaches(i); err != nil {
			s.logf("sample port %d: %v", i, err)
		} else {
			res.TrafficOK++
		}
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(time.Millisecond) {
			if te, ok := s.watch.seenBy(id, all); ok {
				everyone = append(everyone, te.Sub(t0))
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("sample port %d: not in every agent's topology after a minute", i)
			}
		}
		s.watch.forget(id)
	}
	res.API, res.Local, res.Peers, res.Everyone = percentiles(api), percentiles(local), percentiles(peers), percentiles(everyone)
	res.PeersPerPort = float64(npeers) / float64(s.cfg.Samples)
	s.logf("samples: create→bound p50 %s p99 %s; create→every peer p50 %s p99 %s; traffic %d/%d",
		res.Local.P50, res.Local.P99, res.Peers.P50, res.Peers.P99, res.TrafficOK, res.Traffic)
	return nil
}

// broadcastReaches sends an ARP request from port i's VM and waits for it
// on the VM of another host's port on the same bridge: the new port's
// host simulated its first packet and flooded it through the tunnels.
func (s *scaleRun) broadcastReaches(i int) error {
	h, _ := s.layout(i)
	// The same bridge, another host: i ± Bridges·k.
	peer := -1
	for j := i - s.cfg.Bridges; j >= 0; j -= s.cfg.Bridges {
		if ph, _ := s.layout(j); ph != h {
			peer = j
			break
		}
	}
	if peer < 0 {
		return fmt.Errorf("no port of another host on its bridge")
	}
	ph, _ := s.layout(peer)
	src, _ := s.hosts[h].host.Interface(ifaceName(i))
	dst, _ := s.hosts[ph].host.Interface(ifaceName(peer))
	if src == nil || dst == nil {
		return fmt.Errorf("interfaces missing")
	}
	// Earlier floods wait in the peer VM's queue: drain it.
	for {
		ctx, cancel := context.WithTimeout(s.ctx, time.Millisecond)
		_, err := dst.Recv(ctx)
		cancel()
		if err != nil {
			break
		}
	}
	mac := portMAC(i)
	buf := make([]byte, 128)
	n, err := packet.BuildProbe(buf, &packet.Probe{EthSrc: mac, EthDst: packet.BroadcastMAC, ARP: true,
		Src: netip.AddrFrom4([4]byte{10, 77, byte(i >> 8), byte(i)}), Dst: netip.MustParseAddr("10.77.255.254")})
	if err != nil {
		return err
	}
	if err := src.Send(buf[:n]); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	for {
		f, err := dst.Recv(ctx)
		if err != nil {
			return fmt.Errorf("its broadcast did not reach %s's VM within 5 s", s.hosts[ph].name)
		}
		var p packet.Parsed
		if p.Decode(f); p.EthSrc == mac {
			return nil
		}
	}
}

// restarts stops agents and times their full sync when they start again.
func (s *scaleRun) restarts(res *ScaleResult) error {
	var topo, bound []time.Duration
	for r := range s.cfg.Restarts {
		h := s.hosts[(r*len(s.hosts))/max(s.cfg.Restarts, 1)]
		if err := h.stop(); err != nil {
			return err
		}
		s.watch.mu.Lock()
		delete(s.watch.flushed, h.index)
		s.watch.mu.Unlock()
		t0 := time.Now()
		if err := h.start(s.ctx); err != nil {
			return err
		}
		var tt, tb time.Time
		for deadline := t0.Add(5 * time.Minute); ; time.Sleep(time.Millisecond) {
			if tt.IsZero() {
				s.watch.mu.Lock()
				tt = s.watch.flushed[h.index]
				s.watch.mu.Unlock()
			}
			if tb.IsZero() && int(h.attached()) == s.perHost[h.index] {
				tb = time.Now()
			}
			if !tt.IsZero() && !tb.IsZero() {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("restarted agent %s: topology %v, %d of %d ports bound after 5 minutes", h.name, !tt.IsZero(), h.attached(), s.perHost[h.index])
			}
		}
		topo, bound = append(topo, tt.Sub(t0)), append(bound, tb.Sub(t0))
		s.logf("restarted %s: topology in %s, its %d ports bound in %s", h.name, tt.Sub(t0).Round(time.Millisecond), s.perHost[h.index], tb.Sub(t0).Round(time.Millisecond))
	}
	res.FullSyncTopology, res.FullSyncBound = percentiles(topo), percentiles(bound)
	return nil
}

// serverProcess is a nagare-server child process.
type serverProcess struct {
	cmd  *exec.Cmd
	base string   // API URL
	etcd []string // where agents reach the NSDB
	done chan struct{}
}

// startServerProcess starts nagare-server (noauth: the benchmark measures
// the agents' side) with its embedded etcd, or on cluster.
func startServerProcess(ctx context.Context, bin, dir string, cluster *etcdcluster.Cluster) (*serverProcess, error) {
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		bin = filepath.Join(filepath.Dir(exe), "nagare-server")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	p := &serverProcess{base: fmt.Sprintf("http://127.0.0.1:%d", ports[0]), done: make(chan struct{})}
	args := []string{"--data-dir", dir, "--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]), "--auth", "noauth", "--log-level", "warn"}
	if cluster != nil {
		p.etcd = cluster.Endpoints()
		args = append(args, "--etcd-endpoints", strings.Join(p.etcd, ","))
	} else {
		p.etcd = []string{fmt.Sprintf("http://127.0.0.1:%d", ports[1])}
		args = append(args, "--etcd-listen", p.etcd[0], "--etcd-peer-listen", fmt.Sprintf("http://127.0.0.1:%d", ports[2]))
	}
	log, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = log, log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	go func() { // owned: Stop waits for it
		_ = p.cmd.Wait()
		log.Close()
		close(p.done)
	}()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(p.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			b, _ := os.ReadFile(filepath.Join(dir, "server.log"))
			return nil, fmt.Errorf("nagare-server exited: %s", b)
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			p.Stop()
			return nil, fmt.Errorf("nagare-server did not become healthy within a minute")
		}
	}
}

// Stop ends the server (SIGTERM, then SIGKILL).
func (p *serverProcess) Stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// EtcdLoad is the NSDB's work during the sample phase, per second.
type EtcdLoad struct {
	Watchers            float64 // open watchers (all members)
	Txns, Puts, Ranges  float64 // per second (the first member's, as every member applies every write)
	EventsSent          float64 // watch events sent to watchers per second (all members)
	SentBytes, RecvByte float64 // client gRPC bytes per second (all members)
}

type etcdCounters map[string]float64

// scrapeEtcd sums the etcd metrics of every endpoint, and keeps the first
// endpoint's per-member ones under "first:".
func scrapeEtcd(ctx context.Context, endpoints []string) (etcdCounters, error) {
	out := etcdCounters{}
	for i, ep := range endpoints {
		req, err := http.NewRequestWithContext(ctx, "GET", ep+"/metrics", nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("etcd metrics of %s: %w", ep, err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "#") {
				continue
			}
			name, val, ok := strings.Cut(line, " ")
			if !ok {
				continue
			}
			if j := strings.IndexByte(name, '{'); j >= 0 {
				name = name[:j]
			}
			v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
			if err != nil {
				continue
			}
			out[name] += v
			if i == 0 {
				out["first:"+name] += v
			}
		}
		resp.Body.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (after etcdCounters) since(before etcdCounters, secs float64) EtcdLoad {
	rate := func(name string) float64 { return (after[name] - before[name]) / secs }
	return EtcdLoad{
		Watchers:   after["etcd_debugging_mvcc_watcher_total"],
		Txns:       rate("first:etcd_mvcc_txn_total"),
		Puts:       rate("first:etcd_mvcc_put_total"),
		Ranges:     rate("first:etcd_mvcc_range_total"),
		EventsSent: rate("etcd_debugging_mvcc_events_total"),
		SentBytes:  rate("etcd_network_client_grpc_sent_bytes_total"),
		RecvByte:   rate("etcd_network_client_grpc_received_bytes_total"),
	}
}

// procCPU is a process's CPU time so far, in seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command (which may hold spaces) in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func sumCPU(pids []int) float64 {
	t := 0.0
	for _, p := range pids {
		t += procCPU(p)
	}
	return t
}

// procMem is a process's resident memory now and at its peak.
func procMem(pid int) (rss, hwm uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb << 10
		case "VmHWM":
			hwm = kb << 10
		}
	}
	return rss, hwm
}
