package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nagare/nagare/pkg/bench"
)

// scaleBench is `nagare-bench scale`: one nagare-server and many
// simulated hypervisors (real agents on the in-memory datapath, in this
// process), ovn-heater style.
func scaleBench(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("nagare-bench scale", flag.ExitOnError)
	var cfg bench.ScaleConfig
	hosts := fs.String("hosts", "100", "simulated hypervisors; a comma-separated list runs each in turn (e.g. 100,300,1000)")
	fs.IntVar(&cfg.Ports, "ports", 10000, "ports in all, port i on host i mod hosts and bridge i mod bridges")
	fs.IntVar(&cfg.Bridges, "bridges", 40, "bridges (ovn-heater's 1,000-host test has 40 logical switches)")
	fs.IntVar(&cfg.Samples, "samples", 200, "ports created one at a time and timed (the last ones)")
	fs.IntVar(&cfg.FillClients, "fill-clients", 32, "concurrent API clients filling the topology")
	fs.IntVar(&cfg.Cluster, "etcd-cluster", 0, "0: nagare-server's embedded etcd; N: an external cluster of N etcd members (Debian's etcd)")
	fs.IntVar(&cfg.EtcdClients, "etcd-clients", 0, "etcd connections the agents share (0: one per agent, as real hypervisors have)")
	fs.IntVar(&cfg.Restarts, "restarts", 3, "agents restarted to time a full sync")
	fs.DurationVar(&cfg.LeaseTTL, "lease-ttl", 15*time.Second, "the agents' liveness lease (nagare-agent's default is 3s; hundreds of agents sharing two cores starve each other's keepalives)")
	fs.StringVar(&cfg.ServerBin, "server", "", "nagare-server binary (default: next to nagare-bench)")
	fs.StringVar(&cfg.CPUProfile, "cpuprofile", "", "write this process's (the agents') CPU profile of their start and first sync to FILE")
	fs.StringVar(&cfg.HeapProfile, "memprofile", "", "write this process's (the agents') heap profile after the samples to FILE")
	_ = fs.Parse(args)
	var results []*bench.ScaleResult
	for _, h := range list(*hosts) {
		n, err := strconv.Atoi(h)
		if err != nil {
			return fmt.Errorf("--hosts: %q is not a number", h)
		}
		c := cfg
		c.Hosts = n
		r, err := bench.RunScale(ctx, c, logf)
		if err != nil {
			return fmt.Errorf("%d hosts: %w", n, err)
		}
		results = append(results, r)
		printScale(r)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }

func mb(b uint64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

func printScale(r *bench.ScaleResult) {
	c := r.Config
	etcd := "embedded (in nagare-server)"
	if c.Cluster > 0 {
		etcd = fmt.Sprintf("external, %d members", c.Cluster)
	}
	clients := "one per agent"
	if c.EtcdClients > 0 && c.EtcdClients < c.Hosts {
		clients = fmt.Sprintf("%d shared by the agents", c.EtcdClients)
	}
	fmt.Printf("\n%d hosts × %d ports on %d bridges; etcd %s; etcd connections %s; lease %s; setup %s; decoded objects shared by the agents\n",
		c.Hosts, c.Ports, c.Bridges, etcd, clients, c.LeaseTTL, r.Setup.Round(time.Second))
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tp50\tp99\tmax")
	row := func(name string, p bench.Percentiles) {
		fmt.Fprintf(tw, "%s\tp50 %s\tp99 %s\tmax %s\n", name, ms(p.P50), ms(p.P99), ms(p.Max))
	}
	row(fmt.Sprintf("API port create (%d samples, one at a time)", c.Samples), r.API)
	row("create → flow-ready on its host (bound)", r.Local)
	row(fmt.Sprintf("create → in the topology of every peer host (%.0f hosts share its bridge)", r.PeersPerPort), r.Peers)
	row(fmt.Sprintf("create → in the topology of all %d hosts", c.Hosts), r.Everyone)
	row(fmt.Sprintf("restarted agent: full sync of the topology (%d restarts)", c.Restarts), r.FullSyncTopology)
	row("restarted agent: full sync and its ports bound", r.FullSyncBound)
	fmt.Fprintf(tw, "first broadcast from a new port reaches a peer host's VM\t%d of %d\t\t\n", r.TrafficOK, r.Traffic)
	tw.Flush()
	e := r.Etcd
	fmt.Printf("etcd during the samples: %.0f watchers; %.1f txn/s, %.1f put/s, %.1f range/s; %.0f watch events/s sent; gRPC %.1f MB/s out, %.2f MB/s in\n",
		e.Watchers, e.Txns, e.Puts, e.Ranges, e.EventsSent, e.SentBytes/1e6, e.RecvByte/1e6)
	fmt.Printf("nagare-server: %.2f cores, RSS %s (peak %s)\n", r.Server.CPU, mb(r.Server.RSS), mb(r.Server.HWM))
	if c.Cluster > 0 {
		fmt.Printf("etcd members: %.2f cores, RSS %s (peak %s) together\n", r.EtcdMembers.CPU, mb(r.EtcdMembers.RSS), mb(r.EtcdMembers.HWM))
	}
	fmt.Printf("agents (this process): %.2f cores, RSS %s (peak %s), Go heap %s: %.1f MB RSS per agent\n",
		r.Agents.CPU, mb(r.Agents.RSS), mb(r.Agents.HWM), mb(r.AgentHeap), float64(r.Agents.RSS)/(1<<20)/float64(c.Hosts))
}
