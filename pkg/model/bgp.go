package model

import (
	"crypto/sha1"
	"fmt"
	"net/netip"
	"strings"
)

// BGP on a router's uplinks (pkg/agent/bgp). A router with an ASN speaks
// BGP on every port that has a BGP peer and is bound to an interface on a
// gateway host: the agent of that host runs the session from the port's
// address, announces the router's BGP networks and turns what the peer
// announces into learned routes through that port. Learned routes are
// not stored as Route objects: the gateway publishes them under its
// liveness lease and readers show them as routes marked learned.

// BGPPeer is a BGP session of a router with a neighbour on one of its
// ports' networks (single hop).
type BGPPeer struct {
	Meta
	RouterID string     `json:"router_id" nagare:"cli=router,ref=router,ondelete=cascade,required,parent"`
	PortID   string     `json:"port_id,omitempty" nagare:"cli=port,ref=port,ondelete=cascade,parent,doc=the router port the session runs over; default the port whose network holds address"`
	ASN      uint32     `json:"asn" nagare:"cli=asn,required,min=1,doc=the peer's autonomous system number"`
	Address  netip.Addr `json:"address" nagare:"cli=address,required,unique=router_id,doc=the peer's address on the port's network"`
	// Timers default to fast ones: an uplink exists to fail over.
	KeepAlive uint16 `json:"keepalive" nagare:"cli=keepalive,default=1,min=1,max=21845,doc=seconds between keepalives"`
	HoldTime  uint16 `json:"hold_time" nagare:"cli=hold-time,default=3,min=3,max=65535,doc=seconds of silence after which the session is down"`
	// BFD (RFC 5880/5881, single hop) detects a dead peer in
	// bfd_interval × bfd_multiplier: 300 ms by default.
	BFD           string `json:"bfd" nagare:"cli=bfd,enum=on|off,default=on,doc=bidirectional forwarding detection with the peer"`
	BFDInterval   uint32 `json:"bfd_interval" nagare:"cli=bfd-interval,default=100,min=10,max=60000,doc=milliseconds between BFD packets, both ways"`
	BFDMultiplier uint8  `json:"bfd_multiplier" nagare:"cli=bfd-multiplier,default=3,min=1,max=255,doc=BFD packets missed before the peer is down"`
	MaxPrefixes   uint32 `json:"max_prefixes" nagare:"cli=max-prefixes,default=1000,min=1,max=1000000,doc=the session is reset when the peer announces more prefixes"`
	// Password signs every segment of the session (TCP MD5, RFC 2385);
	// the API takes it and never shows it.
	Password string `json:"password,omitempty" nagare:"cli=password,secret,doc=TCP MD5 signature key shared with the peer (RFC 2385; write-only); empty: none"`
	// What the agent speaking for the port reports (pkg/agent/bgp),
	// under its liveness lease: nothing while no agent speaks.
	Status           string `json:"status,omitempty" nagare:"cli=status,ro,derived,doc=session state: idle, connect, active, opensent, openconfirm, established; or why no agent speaks"`
	Uptime           uint64 `json:"uptime,omitempty" nagare:"cli=uptime,ro,derived,doc=seconds since the session was established"`
	PrefixesReceived uint32 `json:"prefixes_received,omitempty" nagare:"cli=received,ro,derived,doc=prefixes the peer announces"`
	PrefixesSent     uint32 `json:"prefixes_sent,omitempty" nagare:"cli=sent,ro,derived,doc=prefixes announced to the peer"`
	SpeakerHostID    string `json:"speaker_host_id,omitempty" nagare:"cli=speaker,ref=host,ro,derived,doc=host whose agent speaks for the port"`
}

// BFDEnabled reports whether the peer runs BFD.
func (p *BGPPeer) BFDEnabled() bool { return p.BFD != "off" }

// BGPNetwork is a prefix a router's BGP uplinks announce (a tenant range,
// floating IPs), with the port's address as next hop.
type BGPNetwork struct {
	Meta
	RouterID string       `json:"router_id" nagare:"cli=router,ref=router,ondelete=cascade,required,parent"`
	Network  netip.Prefix `json:"network" nagare:"cli=net,required,unique=router_id,doc=prefix announced to every BGP peer of the router"`
}

func checkBGPPeer(o Object) error {
	p := o.(*BGPPeer)
	a := p.Address
	if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
		return fieldErr("address", "%s is not a usable unicast address", a)
	}
	if uint32(p.KeepAlive)*3 > uint32(p.HoldTime) {
		return fieldErr("hold_time", "%d s is less than three keepalives of %d s", p.HoldTime, p.KeepAlive)
	}
	return CheckBGPPassword(p.Password)
}

// MaxBGPPasswordLen is the longest TCP MD5 key Linux takes
// (TCP_MD5SIG_MAXKEYLEN).
const MaxBGPPasswordLen = 80

// CheckBGPPassword checks a BGP session's TCP MD5 key: at most 80 bytes
// (the kernel's limit), printable ASCII without spaces, as routers'
// configurations (FRR's neighbor … password) take it.
func CheckBGPPassword(pw string) error {
	if len(pw) > MaxBGPPasswordLen {
		return fieldErr("password", "%d characters; a TCP MD5 key has at most %d", len(pw), MaxBGPPasswordLen)
	}
	for _, c := range []byte(pw) {
		if c <= ' ' || c > '~' {
			return fieldErr("password", "printable ASCII without spaces only (a router's configuration must be able to hold it)")
		}
	}
	return nil
}

func checkBGPNetwork(o Object) error {
	n := o.(*BGPNetwork)
	if a := n.Network.Addr(); a.IsMulticast() || a.IsLoopback() {
		return fieldErr("network", "%s is not a unicast range", n.Network)
	}
	return nil
}

// prepareBGPPeer names the port a peer without one runs over (the router
// port whose network holds the peer's address) and checks that the port
// belongs to the router and is on the peer's network: sessions are single
// hop, as BFD's are (RFC 5881).
func prepareBGPPeer(tx Tx, p *BGPPeer) error {
	r, err := getAs[*Router](tx, RouterKind, p.RouterID, "router_id")
	if err != nil {
		return err
	}
	if r.ASN == 0 {
		return fieldErr("router_id", "router %s has no asn; set it first (router ROUTER set asn N)", r.ID)
	}
	if p.PortID == "" {
		ports, err := tx.List(PortKind, "router_id", p.RouterID)
		if err != nil {
			return err
		}
		var found []string
		for _, o := range ports {
			if q := o.(*Port); q.Network.Contains(p.Address) {
				found = append(found, q.ID)
			}
		}
		switch len(found) {
		case 0:
			return fieldErr("port_id", "no port of router %s has a network holding %s; give the port", r.ID, p.Address)
		case 1:
			p.PortID = found[0]
		default:
			return fieldErr("port_id", "ports %s of router %s all hold %s; give the port", strings.Join(found, ", "), r.ID, p.Address)
		}
	}
	port, err := getAs[*Port](tx, PortKind, p.PortID, "port_id")
	if err != nil {
		return err
	}
	switch {
	case port.RouterID != p.RouterID:
		return fieldErr("port_id", "port %s is not a port of router %s", port.ID, p.RouterID)
	case !port.Network.Contains(p.Address):
		return fieldErr("address", "%s is not on port %s's network %s: BGP peers are one hop away", p.Address, port.ID, port.Network)
	case port.Address == p.Address:
		return fieldErr("address", "%s is the port's own address", p.Address)
	}
	return nil
}

// LearnedRouteID is the id of the route a BGP peer on portID announced for
// dst: derived (a name-based UUID, RFC 9562 version 5 layout), so every
// reader names the same learned route the same way, and its tag in the
// simulation is stable across announcements.
func LearnedRouteID(portID string, dst netip.Prefix) string {
	h := sha1.Sum([]byte("nagare-learned-route\x00" + portID + "\x00" + dst.Masked().String()))
	h[6] = h[6]&0x0f | 0x50
	h[8] = h[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", h[0:4], h[4:6], h[6:8], h[8:10], h[10:16])
}
