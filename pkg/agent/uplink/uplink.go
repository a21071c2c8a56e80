// Package uplink binds the uplinks of physical networks: how a bridge
// reaches the world outside the overlay.
//
// An agent started with --physical-interface-mappings physnet1:eth1 (the
// Neutron agents' syntax) publishes the physical networks it maps in its
// host record (model.Host.PhysicalNetworks). A bridge's uplink is a bridge
// port marked with a physical network (model.Port.PhysicalNetwork; the
// Neutron translation makes one for every flat and VLAN provider network).
// Exactly one alive agent that maps the physical network binds the uplink,
// by writing an ordinary binding (host_id, interface_name) on it: the
// interface itself for an untagged uplink, the VLAN subinterface IF.N
// (created here, named as Neutron's Linux bridge agent names it) for
// physical_vlan N. Every other host reaches the uplink as any remote
// exterior port: the simulation tunnels to the bound host.
//
// Which agent: the binding is sticky while its host is alive and still
// maps the physical network; otherwise the alive mapping host with the
// highest rendezvous hash of (port id, host id) takes it, so that agents
// agree without talking and uplinks of different networks spread over the
// gateways. A dead host's uplinks move once its lease expires (the
// liveness TTL, 3 s by default). The write is a claim (package hostclaim:
// the NSDB directly, or the server for a joined agent, which may not write
// the topology) checked in a transaction against the binding it replaces,
// so two agents racing on stale views cannot both win, and no host takes
// an uplink from a live holder that maps its network.
//
// Why one binding rather than OVN's localnet on every chassis: in Nagare a
// port is bound to one host and the simulation sends to that host, so one
// uplink keeps the model unchanged; N uplinks of one bridge on a shared
// wire would echo floods back into the overlay (a frame from the wire
// flooded out of another host's uplink onto the same wire) and make MAC
// learning flap between hosts. MidoNet binds an uplink on one gateway
// host the same way. The price is a tunnel hop to the gateway host for
// VMs elsewhere, and a failover that waits for the lease.
package uplink

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nagare/nagare/internal/backoff"
	"github.com/nagare/nagare/pkg/agent/mirror"
	"github.com/nagare/nagare/pkg/hostclaim"
	"github.com/nagare/nagare/pkg/model"
)

// ParseMappings reads --physical-interface-mappings, "physnet1:eth1,
// physnet2:eth2". A physical network is mapped once, an interface serves
// one physical network (as Neutron's agents require).
func ParseMappings(s string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	ifaces := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		phys, iface, ok := strings.Cut(item, ":")
		phys, iface = strings.TrimSpace(phys), strings.TrimSpace(iface)
		switch {
		case !ok:
			return nil, fmt.Errorf("%q is not PHYSNET:INTERFACE", item)
		case !model.ValidPhysicalNetwork(phys):
			return nil, fmt.Errorf("%q is not a physical network name (1-64 characters, no ',', ':' or spaces)", phys)
		case !hostclaim.ValidInterfaceName(iface):
			return nil, fmt.Errorf("%q is not a Linux interface name (1-15 characters, no '/', ':' or spaces)", iface)
		case out[phys] != "":
			return nil, fmt.Errorf("physical network %s is mapped twice", phys)
		case ifaces[iface] != "":
			return nil, fmt.Errorf("interface %s is mapped to both %s and %s", iface, ifaces[iface], phys)
		}
		out[phys], ifaces[iface] = iface, phys
	}
	return out, nil
}

// vlanInterfaceName is the subinterface of iface for VLAN vid, "eth1.100",
// with iface cut short when the name would exceed 15 characters (as the
// Linux bridge agent does).
func vlanInterfaceName(iface string, vid uint16) string {
	suffix := "." + strconv.Itoa(int(vid))
	if len(iface)+len(suffix) > 15 {
		iface = iface[:15-len(suffix)]
	}
	return iface + suffix
}

// uplinkInputs is what the choice of uplinks reads from the topology.
type uplinkInputs struct {
	ports    []*model.Port       // bridge ports with a physical network
	hostNets map[string][]string // host id → physical networks it maps
}

// uplinkClaim is an uplink this host must hold, bound to iface (a VLAN
// subinterface of parent when vlan is set).
type uplinkClaim struct {
	port          *model.Port
	iface, parent string
	vlan          uint16
}

func uplinkHash(portID, hostID string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(portID))
	h.Write([]byte{0})
	h.Write([]byte(hostID))
	return h.Sum64()
}

// claimUplinks decides which uplinks host me holds: those bound to it that
// it still maps, and those whose holder is gone (unbound, dead, or no
// longer mapping the physical network) for which it is the rendezvous
// winner among the alive hosts that map the physical network.
func claimUplinks(me string, mappings map[string]string, in uplinkInputs, alive map[string]bool) []uplinkClaim {
	maps := func(host, phys string) bool { return alive[host] && slices.Contains(in.hostNets[host], phys) }
	var out []uplinkClaim
	for _, p := range in.ports {
		parent, ok := mappings[p.PhysicalNetwork]
		if !ok || p.BridgeID == "" {
			continue
		}
		if p.HostID != me {
			if p.HostID != "" && maps(p.HostID, p.PhysicalNetwork) {
				continue // sticky: its holder is alive and maps it
			}
			best, bestHash := "", uint64(0)
			for host := range in.hostNets {
				if !maps(host, p.PhysicalNetwork) {
					continue
				}
				if h := uplinkHash(p.ID, host); best == "" || h > bestHash || (h == bestHash && host > best) {
					best, bestHash = host, h
				}
			}
			if best != me {
				continue
			}
		}
		c := uplinkClaim{port: p, iface: parent}
		if p.PhysicalVLAN != 0 {
			c.iface, c.parent, c.vlan = vlanInterfaceName(parent, p.PhysicalVLAN), parent, p.PhysicalVLAN
		}
		out = append(out, c)
	}
	return out
}

// inputs reads the uplinks and the hosts' mappings from a topology.
func inputs(s *mirror.Snapshot) uplinkInputs {
	in := uplinkInputs{hostNets: map[string][]string{}}
	s.Each(model.PortKind, func(o model.Object) bool {
		if x := o.(*model.Port); x.PhysicalNetwork != "" {
			in.ports = append(in.ports, x)
		}
		return true
	})
	s.Each(model.HostKind, func(o model.Object) bool {
		x := o.(*model.Host)
		in.hostNets[x.ID] = x.PhysicalNetworks
		return true
	})
	// In a fixed order, whatever the snapshot's.
	slices.SortFunc(in.ports, func(a, b *model.Port) int { return strings.Compare(a.ID, b.ID) })
	return in
}

// Claims publishes the host's physical networks and binds uplinks to it
// (hostclaim.Claims).
type Claims interface {
	SetHost(ctx context.Context, hostID string, h hostclaim.HostInfo) error
	ClaimUplink(ctx context.Context, hostID string, u hostclaim.Uplink) error
}

// VLANs makes the VLAN subinterfaces of uplinks.
type VLANs interface {
	// Ensure creates name, the subinterface of parent for vid, if it does
	// not exist, and brings both up.
	Ensure(parent, name string, vid uint16) error
}

// Config wires the uplinks of one host.
type Config struct {
	HostID string
	// Mappings are the physical networks this host reaches: physical
	// network → interface.
	Mappings map[string]string
	Claims   Claims
	// VLANs makes VLAN subinterfaces; nil where the datapath has no
	// kernel interfaces (VLAN uplinks are then not bound here).
	VLANs VLANs
	// Alive are the hosts alive now, and a revision of that knowledge
	// (nsdb.LiveHosts).
	Alive func() (map[string]bool, int64)
	// Topology is the latest topology snapshot.
	Topology func() *mirror.Snapshot
	Log      *slog.Logger
}

// Uplinks publishes this host's mappings and claims its uplinks.
type Uplinks struct {
	cfg    Config
	warned map[string]bool // uplinks whose failure was logged (retried every pass)
}

// New returns the uplinks of a host.
func New(cfg Config) *Uplinks {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Uplinks{cfg: cfg, warned: map[string]bool{}}
}

// Run publishes the mappings and claims uplinks until ctx is done.
func (u *Uplinks) Run(ctx context.Context) error {
	nets := make([]string, 0, len(u.cfg.Mappings))
	for n := range u.cfg.Mappings {
		nets = append(nets, n)
	}
	sort.Strings(nets)
	err := backoff.Policy{Base: 250 * time.Millisecond, Max: time.Second}.Retry(ctx, func(ctx context.Context) error {
		return u.cfg.Claims.SetHost(ctx, u.cfg.HostID, hostclaim.HostInfo{PhysicalNetworks: nets})
	}, func(attempt int, err error) {
		u.cfg.Log.Warn("cannot publish physical network mappings; retrying", "attempt", attempt, "err", err)
	})
	if err != nil || len(nets) == 0 {
		<-ctx.Done()
		return ctx.Err()
	}
	u.cfg.Log.Info("physical networks mapped", "mappings", u.cfg.Mappings)
	return u.claimLoop(ctx)
}

// claimLoop claims, whenever the topology or liveness changed, the
// uplinks this host must hold.
func (u *Uplinks) claimLoop(ctx context.Context) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var seenVersion uint64
	seenRev := int64(-1)
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		snap := u.cfg.Topology()
		alive, rev := u.cfg.Alive()
		if !snap.ChangedSince(seenVersion, mirror.UplinkPorts, model.HostKind.Name) && rev == seenRev {
			seenVersion = snap.Version
			continue // nothing this reads changed since the last pass
		}
		if u.claim(ctx, inputs(snap), alive) {
			seenVersion, seenRev = snap.Version, rev
		}
	}
}

// claim binds the uplinks this host must hold; it reports whether every
// claim is done (a failed one is retried on the next pass).
func (u *Uplinks) claim(ctx context.Context, in uplinkInputs, alive map[string]bool) bool {
	done := true
	me := u.cfg.HostID
	for _, c := range claimUplinks(me, u.cfg.Mappings, in, alive) {
		if c.vlan != 0 {
			err := errors.New("this datapath has no kernel interfaces to make a VLAN subinterface of")
			if u.cfg.VLANs != nil {
				err = u.cfg.VLANs.Ensure(c.parent, c.iface, c.vlan)
			}
			if err != nil {
				if !u.warned[c.port.ID] {
					u.cfg.Log.Warn("cannot create the VLAN subinterface of an uplink; retrying", "port", c.port.ID, "interface", c.iface, "err", err)
					u.warned[c.port.ID] = true
				}
				done = false
				continue
			}
		}
		if c.port.HostID == me && c.port.InterfaceName == c.iface {
			continue
		}
		prev := c.port.HostID
		err := u.cfg.Claims.ClaimUplink(ctx, me, hostclaim.Uplink{PortID: c.port.ID, PreviousHostID: prev,
			PhysicalNetwork: c.port.PhysicalNetwork, PhysicalVLAN: c.port.PhysicalVLAN, Interface: c.iface})
		switch {
		case hostclaim.IsClass(err, hostclaim.Conflict) || hostclaim.IsClass(err, hostclaim.NotFound):
			// Someone else moved it, or it is gone: the next view decides.
		case err != nil:
			if !u.warned[c.port.ID] {
				u.cfg.Log.Warn("cannot bind an uplink; retrying", "port", c.port.ID, "physical_network", c.port.PhysicalNetwork, "err", err)
				u.warned[c.port.ID] = true
			}
			done = false
		default:
			delete(u.warned, c.port.ID)
			u.cfg.Log.Info("uplink bound", "port", c.port.ID, "bridge", c.port.BridgeID, "physical_network", c.port.PhysicalNetwork,
				"interface", c.iface, "previous_host", prev)
		}
	}
	return done
}
