package hostclaim

import (
	"context"
	"hash/fnv"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// A router's health-check port (see package agent/lbhealth): a router port
// 169.254.255.1/30 with a route for 169.254.255.0/30, bound to the agent
// that checks the router's members, on interface HealthIfName(router).
// Link-local addresses cannot clash with tenant subnets, and the port is
// recognised by them: no field marks it.
var (
	HealthPortAddr = netip.MustParseAddr("169.254.255.1")
	HealthPeerAddr = netip.MustParsePrefix("169.254.255.2/30")
	HealthCheckNet = netip.MustParsePrefix("169.254.255.0/30")
)

// IsHealthPort reports whether p is a router's health-check port.
func IsHealthPort(p *model.Port) bool {
	return p.RouterID != "" && p.Address == HealthPortAddr && p.Network == HealthCheckNet
}

// healthIfPrefix starts the datapath end's name: "nhm" + 12 hex digits of
// the router id (15 characters, the kernel's limit).
const healthIfPrefix = "nhm"

// HealthIfName is the interface of a router's health-check port.
func HealthIfName(routerID string) string {
	return healthIfPrefix + (strings.ReplaceAll(routerID, "-", "") + "000000000000")[:12]
}

// Rendezvous returns the host responsible for key among hosts: the one
// with the highest hash of (key, host). When a host dies only its keys
// move. Agents and the server agree without talking.
func Rendezvous(key string, hosts []string) string {
	var best string
	var bestScore uint64
	for _, host := range hosts {
		f := fnv.New64a()
		f.Write([]byte(key))
		f.Write([]byte{0})
		f.Write([]byte(host))
		s := mix64(f.Sum64())
		if best == "" || s > bestScore || (s == bestScore && host < best) {
			best, bestScore = host, s
		}
	}
	return best
}

// mix64 is splitmix64's finalizer: FNV alone spreads similar keys badly.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// healthPorts lists a router's health-check ports, the one to keep (the
// lowest id) first.
func healthPorts(tx *nsdb.Tx, routerID string) ([]*model.Port, error) {
	ps, err := tx.List(model.PortKind, "router_id", routerID)
	if err != nil {
		return nil, err
	}
	var out []*model.Port
	for _, o := range ps {
		if p := o.(*model.Port); IsHealthPort(p) {
			out = append(out, p)
		}
	}
	for i := 1; i < len(out); i++ {
		if out[i].ID < out[0].ID {
			out[0], out[i] = out[i], out[0]
		}
	}
	return out, nil
}

// mayCheck applies the rule of health-check ports: host hostID, alive,
// may act for routerID when it is the router's rendezvous choice among
// the alive hosts, or when the port it would take (holder) is unbound,
// its own, or bound to a dead host.
func mayCheck(tx *nsdb.Tx, hostID, routerID, holder string) error {
	alive, err := tx.AliveHosts()
	if err != nil {
		return err
	}
	if !slices.Contains(alive, hostID) {
		return refuse(Forbidden, "host %s is not alive (its agent holds no lease)", hostID)
	}
	if Rendezvous(routerID, alive) == hostID || holder == hostID || (holder != "" && !slices.Contains(alive, holder)) {
		return nil
	}
	if holder == "" {
		return refuse(Forbidden, "host %s does not check router %s: another alive host does", hostID, routerID)
	}
	return refuse(Forbidden, "the health-check port of router %s is bound to host %s, which is alive and checks it", routerID, holder)
}

// EnsureHealthPort implements Claims.
func (s *Service) EnsureHealthPort(ctx context.Context, hostID, routerID string) (portID string, err error) {
	ifname := HealthIfName(routerID)
	err = s.update(ctx, func(tx *nsdb.Tx) error {
		r, err := getObject[*model.Router](tx, "router", routerID)
		if err != nil {
			return err
		}
		if r.LoadBalancerID == "" {
			return refuse(Forbidden, "router %s has no load balancer to check", routerID)
		}
		ports, err := healthPorts(tx, routerID)
		if err != nil {
			return err
		}
		var port *model.Port
		holder := ""
		if len(ports) > 0 {
			port, holder = ports[0], ports[0].HostID
		}
		if err := mayCheck(tx, hostID, routerID, holder); err != nil {
			return err
		}
		if port == nil {
			o, err := tx.Create(&model.Port{RouterID: routerID, Address: HealthPortAddr, Network: HealthCheckNet,
				HostID: hostID, InterfaceName: ifname})
			if err != nil {
				return err
			}
			port = o.(*model.Port)
		} else if port.HostID != hostID || port.InterfaceName != ifname {
			if _, err := tx.Modify(model.PortKind, port.ID, 0, func(o model.Object) error {
				x := o.(*model.Port)
				x.HostID, x.InterfaceName = hostID, ifname
				return nil
			}); err != nil {
				return err
			}
		}
		portID = port.ID
		routes, err := tx.List(model.RouteKind, "port_id", port.ID)
		if err != nil {
			return err
		}
		for _, o := range routes {
			if o.(*model.Route).Dst == HealthCheckNet {
				return nil
			}
		}
		_, err = tx.Create(&model.Route{RouterID: routerID, Dst: HealthCheckNet, PortID: port.ID})
		return err
	})
	return portID, err
}

// RemoveHealthPort implements Claims.
func (s *Service) RemoveHealthPort(ctx context.Context, hostID, portID string) error {
	return s.update(ctx, func(tx *nsdb.Tx) error {
		p, err := getObject[*model.Port](tx, "port", portID)
		if err != nil {
			return err
		}
		if !IsHealthPort(p) {
			return refuse(Forbidden, "port %s is not a health-check port", portID)
		}
		alive, err := tx.AliveHosts()
		if err != nil {
			return err
		}
		if !slices.Contains(alive, hostID) || Rendezvous(p.RouterID, alive) != hostID {
			return refuse(Forbidden, "host %s does not check router %s", hostID, p.RouterID)
		}
		return tx.Remove(model.PortKind, portID, 0)
	})
}
