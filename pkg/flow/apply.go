package flow

import (
	"errors"
	"fmt"

	"github.com/nagare/nagare/pkg/packet"
)

// Check reports an action whose own parameters are wrong: an unknown
// type, a rewrite to something that is not an address, a VID or tunnel
// key out of range, an unknown encapsulation. Whether an output's port
// exists is the datapath's to say.
func (a *Action) Check() error {
	switch a.Type {
	case ActSetEthSrc, ActSetEthDst, ActPopVLAN, ActDecTTL, ActOutput, ActSetL4Src, ActSetL4Dst, ActSetICMPID:
		return nil
	case ActSetIPSrc, ActSetIPDst, ActInnerSrc, ActInnerDst:
		if !a.Addr.IsValid() || a.Addr.Zone() != "" {
			return fmt.Errorf("%s to %q: not an address", a.Type, a.Addr)
		}
	case ActSetDSCP:
		if a.DSCP > 63 {
			return fmt.Errorf("set-dscp %d: DSCP out of range", a.DSCP)
		}
	case ActMirror:
		if a.Tunnel != packet.TunnelGRE && a.Tunnel != packet.TunnelERSPAN {
			return fmt.Errorf("mirror: unknown encapsulation %s", a.Tunnel)
		}
		if !a.Underlay.IsValid() || !a.Underlay.Unmap().Is4() {
			return fmt.Errorf("mirror to %q: only IPv4 remote endpoints are supported", a.Underlay)
		}
	case ActPushVLAN:
		if a.VLAN > 0x0fff {
			return fmt.Errorf("push-vlan %d: VID out of range", a.VLAN)
		}
	case ActEncap:
		if a.Tunnel != packet.TunnelVXLAN && a.Tunnel != packet.TunnelGRE {
			return fmt.Errorf("encap: unknown tunnel type %s", a.Tunnel)
		}
		if a.TunnelKey > packet.MaxTunnelKey {
			return fmt.Errorf("encap: tunnel key %d does not fit in 24 bits", a.TunnelKey)
		}
		if !a.Underlay.IsValid() {
			return errors.New("encap: no underlay address")
		}
	default:
		return fmt.Errorf("unknown action type %d", a.Type)
	}
	return nil
}

// Rewrites reports the actions Rewrite applies: those that change a
// decoded frame's IP or L4 headers.
func (a *Action) Rewrites() bool {
	switch a.Type {
	case ActDecTTL, ActSetIPSrc, ActSetIPDst, ActSetL4Src, ActSetL4Dst, ActSetICMPID, ActInnerSrc, ActInnerDst, ActSetDSCP:
		return true
	}
	return false
}

// ErrTTLExpired: a dec-ttl would take the TTL below 1.
var ErrTTLExpired = errors.New("flow: TTL expired")

// ErrRewriteRefused: the frame lacks the field a rewrite changes, or is
// of the other address family: the flow was computed for another kind of
// packet.
var ErrRewriteRefused = errors.New("flow: rewrite does not fit the frame")

// Rewrite applies a header rewrite (Rewrites) to the decoded frame p in
// place, with the packet package's rewrites, which fix the IPv4 header,
// TCP, UDP and ICMP checksums incrementally (RFC 1624): the cost does not
// depend on the payload. A frame that is not IP is left alone by dec-ttl
// (the simulation decrements IP packets only). On error nothing changed.
func (a *Action) Rewrite(p *packet.Parsed) error {
	ok := true
	switch a.Type {
	case ActDecTTL:
		if p.L3 != packet.L3IPv4 && p.L3 != packet.L3IPv6 {
			return nil
		}
		if p.TTL <= a.Count {
			return ErrTTLExpired
		}
		for range a.Count {
			p.DecTTL()
		}
	case ActSetIPSrc:
		ok = p.SetSrcIP(a.Addr)
	case ActSetIPDst:
		ok = p.SetDstIP(a.Addr)
	case ActSetL4Src:
		ok = p.SetSrcPort(a.L4Port)
	case ActSetL4Dst:
		ok = p.SetDstPort(a.L4Port)
	case ActSetICMPID:
		ok = p.SetICMPEchoID(a.L4Port)
	case ActInnerSrc:
		ok = p.SetInnerSrc(a.Addr, a.L4Port)
	case ActInnerDst:
		ok = p.SetInnerDst(a.Addr, a.L4Port)
	case ActSetDSCP:
		if p.L3 != packet.L3IPv4 && p.L3 != packet.L3IPv6 {
			return nil // as dec-ttl: only IP packets are marked
		}
		ok = p.SetDSCP(a.DSCP)
	default:
		ok = false
	}
	if !ok {
		return ErrRewriteRefused
	}
	return nil
}
