// Command nagare-agent runs on every hypervisor and gateway: it registers
// the host, binds the virtual ports assigned to it, and forwards their
// traffic through its datapath, simulating the first packet of each flow.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nagare/nagare/pkg/agent"
	joinapi "github.com/nagare/nagare/pkg/api/join"
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/flowstate"
)

func main() {
	var cfg agent.Config
	var endpoints, tunnelIP, logLevel, physMappings, joinURL, token, caFile string
	var vxlanPort uint
	flag.StringVar(&cfg.HostName, "host-name", "", "this host's name in the NSDB (default: the hostname)")
	flag.StringVar(&endpoints, "etcd-endpoints", "http://127.0.0.1:2379", "comma-separated client addresses (HOST:PORT or URLs) of the NSDB (etcd)")
	flag.StringVar(&tunnelIP, "tunnel-ip", "", "this host's underlay address (default: its tunnel-zone member address)")
	flag.StringVar(&cfg.Datapath, "datapath", "", "datapath implementation: "+strings.Join(datapath.Names(), ", ")+" (default: ebpf where the kernel supports it, else userspace)")
	flag.UintVar(&vxlanPort, "vxlan-port", 4789, "UDP port of VXLAN tunnels")
	flag.IntVar(&cfg.UnderlayMTU, "underlay-mtu", 1500, "MTU of the underlay network")
	flag.StringVar(&cfg.MetricsListen, "metrics-listen", "", "address of the Prometheus endpoint, e.g. 127.0.0.1:7300 (empty: off)")
	flag.BoolVar(&cfg.Pprof, "pprof", false, "also serve Go's profiles under /debug/pprof/ on --metrics-listen (heap, CPU), for diagnosis")
	flag.StringVar(&cfg.Netns, "netns", "", "run the datapath in this network namespace (a path like /run/netns/hv1); for tests and demos")
	flag.StringVar(&physMappings, "physical-interface-mappings", "",
		"physical networks this host reaches, PHYSNET:INTERFACE[,...] (e.g. physnet1:eth1); uplinks of flat and VLAN networks on them may be bound here")
	flag.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	flag.IntVar(&cfg.ConntrackMax, "conntrack-max", flowstate.DefaultMaxEntries, "most connection-tracking and NAT entries the host holds (about 150 bytes each)")
	flag.IntVar(&cfg.ConntrackZoneMax, "conntrack-zone-max", flowstate.DefaultMaxPerZone, "most entries of one zone (a device: a bridge, a router), so that one tenant network cannot fill the table")
	flag.DurationVar(&cfg.ConntrackTimeouts.TCPEstablished, "conntrack-tcp-established-timeout", 0, "idle lifetime of an established TCP connection (0: 24h)")
	flag.DurationVar(&cfg.ConntrackTimeouts.UDPEstablished, "conntrack-udp-timeout", 0, "idle lifetime of a UDP flow that saw replies (0: 120s)")
	flag.DurationVar(&cfg.ConntrackTimeouts.UDPNew, "conntrack-udp-new-timeout", 0, "idle lifetime of a UDP flow that has not seen a reply (0: 30s; the kernel's nf_conntrack_udp_timeout)")
	flag.DurationVar(&cfg.ConntrackTimeouts.ICMPReplied, "conntrack-icmp-timeout", 0, "idle lifetime of an ICMP echo exchange (0: 30s)")
	flag.DurationVar(&cfg.GatewayProbeInterval, "gateway-probe-interval", 100*time.Millisecond,
		"how often this host probes each gateway over the tunnels (BFD-style; a gateway is dead after --gateway-probe-multiplier missed answers)")
	flag.IntVar(&cfg.GatewayProbeMultiplier, "gateway-probe-multiplier", 3, "missed probe answers before a gateway's uplinks are dead here")
	flag.StringVar(&cfg.StateDir, "state-dir", "/var/lib/nagare-agent", "directory where connection-tracking and NAT state is saved across restarts, as flowstate-HOSTNAME (empty: not saved)")
	flag.StringVar(&joinURL, "join", "", "join a secure server, e.g. https://server:9696: obtain a host certificate with --token (kept in --state-dir, renewed before it expires) and use it for etcd; once joined, later starts need only --join")
	flag.StringVar(&token, "token", "", "join token from `nagare-server token create` (env NAGARE_JOIN_TOKEN)")
	flag.StringVar(&caFile, "ca-file", "", "the server's CA, when the join token does not pin it")
	flag.Parse()
	if token == "" {
		token = os.Getenv("NAGARE_JOIN_TOKEN")
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "nagare-agent: "+format+"\n", args...)
		os.Exit(2)
	}
	if flag.NArg() > 0 {
		fail("unexpected argument %q", flag.Arg(0))
	}
	for _, e := range strings.Split(endpoints, ",") {
		if e = strings.TrimSpace(e); e != "" {
			cfg.EtcdEndpoints = append(cfg.EtcdEndpoints, e)
		}
	}
	if tunnelIP != "" {
		ip, err := netip.ParseAddr(tunnelIP)
		if err != nil {
			fail("--tunnel-ip: %v", err)
		}
		cfg.TunnelIP = ip
	}
	if cfg.ConntrackMax <= 0 {
		fail("--conntrack-max %d: must be positive", cfg.ConntrackMax)
	}
	if cfg.GatewayProbeInterval < 10*time.Millisecond || cfg.GatewayProbeMultiplier < 2 || cfg.GatewayProbeMultiplier > 255 {
		fail("--gateway-probe-interval %s --gateway-probe-multiplier %d: at least 10ms, and 2 to 255 misses", cfg.GatewayProbeInterval, cfg.GatewayProbeMultiplier)
	}
	if cfg.ConntrackZoneMax <= 0 {
		fail("--conntrack-zone-max %d: must be positive", cfg.ConntrackZoneMax)
	}
	for name, d := range map[string]time.Duration{"--conntrack-tcp-established-timeout": cfg.ConntrackTimeouts.TCPEstablished,
		"--conntrack-udp-timeout": cfg.ConntrackTimeouts.UDPEstablished, "--conntrack-udp-new-timeout": cfg.ConntrackTimeouts.UDPNew, "--conntrack-icmp-timeout": cfg.ConntrackTimeouts.ICMPReplied} {
		if d < 0 {
			fail("%s %v: must not be negative", name, d)
		}
	}
	if vxlanPort == 0 || vxlanPort > 65535 {
		fail("--vxlan-port %d is not a UDP port", vxlanPort)
	}
	cfg.VXLANPort = uint16(vxlanPort)
	m, err := agent.ParsePhysicalInterfaceMappings(physMappings)
	if err != nil {
		fail("--physical-interface-mappings: %v", err)
	}
	cfg.PhysicalInterfaceMappings = m
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		fail("--log-level: %v", err)
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if joinURL != "" {
		endpointsSet := false
		flag.Visit(func(f *flag.Flag) { endpointsSet = endpointsSet || f.Name == "etcd-endpoints" })
		id, err := identity(ctx, cfg, joinURL, token, caFile)
		if err != nil {
			cfg.Log.Error("cannot join", "server", joinURL, "err", err)
			os.Exit(1)
		}
		if !endpointsSet {
			cfg.EtcdEndpoints = id.Endpoints
		}
		cfg.EtcdTLS = id.EtcdTLSConfig()
		cfg.Claims = id.Claims()                                      // its etcd role may not write the topology: the server does, for it
		go func() { _ = id.KeepRenewed(ctx, time.Minute, cfg.Log) }() // ends with ctx
		cfg.Log.Info("joined", "server", joinURL, "host", id.Name, "host_id", id.HostID, "etcd", cfg.EtcdEndpoints, "renew_at", id.RenewDue())
	}
	if err := agent.Run(ctx, cfg); err != nil {
		cfg.Log.Error("agent stopped", "err", err)
		os.Exit(1)
	}
}

// identity loads the host certificate from the state directory, or joins
// with the token to get one.
func identity(ctx context.Context, cfg agent.Config, server, token, caFile string) (*joinapi.Identity, error) {
	if cfg.StateDir == "" {
		return nil, fmt.Errorf("--join needs --state-dir to keep the host certificate in")
	}
	name := cfg.HostName
	if name == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, err
		}
		name = h
	}
	dir := filepath.Join(cfg.StateDir, "identity")
	id, err := joinapi.LoadIdentity(dir)
	if err == nil {
		if id.Name != name {
			return nil, fmt.Errorf("%s holds the identity of host %q, not %q", dir, id.Name, name)
		}
		if time.Now().After(id.RenewDue()) && time.Now().Before(id.Certificate().Leaf.NotAfter) {
			if err := id.Renew(ctx); err != nil {
				return nil, err
			}
		}
		if time.Now().Before(id.Certificate().Leaf.NotAfter) || token == "" {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if token == "" {
		return nil, fmt.Errorf("no host certificate in %s (or it expired): give --token from `nagare-server token create`", dir)
	}
	o := joinapi.JoinOptions{Server: server, Token: token, CAFile: caFile, Name: name, Dir: dir}
	if cfg.TunnelIP.IsValid() {
		o.Addresses = []netip.Addr{cfg.TunnelIP}
	}
	for n := range cfg.PhysicalInterfaceMappings {
		o.PhysicalNetworks = append(o.PhysicalNetworks, n)
	}
	slices.Sort(o.PhysicalNetworks)
	return joinapi.Join(ctx, o)
}
