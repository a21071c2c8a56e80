package model

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/packet"
)

// RandomMAC returns a locally administered unicast address.
func RandomMAC() packet.MAC {
	var m packet.MAC
	_, _ = rand.Read(m[:])
	m[0] = (m[0] &^ 1) | 2
	return m
}

// PortRange is an inclusive L4 port range. The zero value matches any port.
// Text form: "80" or "1000-2000".
type PortRange struct {
	Start, End uint16
}

// IsZero reports whether the range is unset.
func (r PortRange) IsZero() bool { return r == PortRange{} }

// Contains reports whether p lies in the range; an unset range contains all.
func (r PortRange) Contains(p uint16) bool {
	return r.IsZero() || (p >= r.Start && p <= r.End)
}

func (r PortRange) String() string {
	if r.IsZero() {
		return ""
	}
	if r.Start == r.End {
		return strconv.Itoa(int(r.Start))
	}
	return fmt.Sprintf("%d-%d", r.Start, r.End)
}

// MarshalText renders "80" or "1000-2000".
func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses "80" or "1000-2000".
func (r *PortRange) UnmarshalText(b []byte) error {
	v, err := ParsePortRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParsePortRange parses "80" or "1000-2000"; both ends must be 0..65535 and ordered.
func ParsePortRange(s string) (PortRange, error) {
	if s == "" {
		return PortRange{}, nil
	}
	lo, hi, ranged := strings.Cut(s, "-")
	a, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return PortRange{}, fmt.Errorf("%q is not a port or port range (want 80 or 1000-2000)", s)
	}
	b := a
	if ranged {
		if b, err = strconv.ParseUint(hi, 10, 16); err != nil {
			return PortRange{}, fmt.Errorf("%q is not a port or port range (want 80 or 1000-2000)", s)
		}
	}
	if b < a {
		return PortRange{}, fmt.Errorf("port range %q ends before it starts", s)
	}
	return PortRange{uint16(a), uint16(b)}, nil
}

// NATTarget is where a NAT rule translates to: an address range and an
// optional port range. Text form "IP[-IP][:PORT[-PORT]]"; IPv6 addresses are
// bracketed when a port follows ("[2001:db8::1]:80").
type NATTarget struct {
	AddrFrom, AddrTo netip.Addr
	Ports            PortRange
	// Base maps ports one to one (DNAT only, as iptables' /baseport does):
	// original port Base becomes Ports.Start, Base+1 Ports.Start+1, and so
	// on; 0 picks any port of Ports. Text form suffix "/BASE".
	Base uint16
}

func (t NATTarget) String() string {
	var b strings.Builder
	bracket := t.AddrFrom.Is6() && !t.Ports.IsZero()
	if bracket {
		b.WriteByte('[')
	}
	b.WriteString(t.AddrFrom.String())
	if t.AddrTo != t.AddrFrom {
		b.WriteByte('-')
		b.WriteString(t.AddrTo.String())
	}
	if bracket {
		b.WriteByte(']')
	}
	if !t.Ports.IsZero() {
		b.WriteByte(':')
		b.WriteString(t.Ports.String())
	}
	if t.Base != 0 {
		b.WriteByte('/')
		b.WriteString(strconv.Itoa(int(t.Base)))
	}
	return b.String()
}

// MarshalText renders the target in its text form.
func (t NATTarget) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText parses the text form.
func (t *NATTarget) UnmarshalText(b []byte) error {
	v, err := ParseNATTarget(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// ParseNATTarget parses "10.0.0.5", "10.0.0.5-10.0.0.9:1024-65535",
// "[2001:db8::1]:80", "10.0.0.5:1300-1399/2300" (ports mapped one to one
// from 2300).
func ParseNATTarget(s string) (NATTarget, error) {
	bad := fmt.Errorf("%q is not a NAT target (want IP[-IP][:PORT[-PORT][/BASE]])", s)
	var base uint16
	if i := strings.LastIndex(s, "/"); i >= 0 {
		n, err := strconv.ParseUint(s[i+1:], 10, 16)
		if err != nil || n == 0 {
			return NATTarget{}, bad
		}
		base, s = uint16(n), s[:i]
	}
	addrs, ports := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return NATTarget{}, bad
		}
		addrs, ports = s[1:end], strings.TrimPrefix(s[end+1:], ":")
		if end+1 < len(s) && s[end+1] != ':' {
			return NATTarget{}, bad
		}
	} else if strings.Count(s, ":") == 1 {
		addrs, ports, _ = strings.Cut(s, ":")
	}
	from, to, ranged := strings.Cut(addrs, "-")
	var t NATTarget
	var err error
	if t.AddrFrom, err = netip.ParseAddr(from); err != nil {
		return NATTarget{}, bad
	}
	t.AddrTo = t.AddrFrom
	if ranged {
		if t.AddrTo, err = netip.ParseAddr(to); err != nil {
			return NATTarget{}, bad
		}
		if t.AddrTo.Is4() != t.AddrFrom.Is4() || t.AddrTo.Less(t.AddrFrom) {
			return NATTarget{}, fmt.Errorf("NAT target %q: address range is empty or mixes families", s)
		}
	}
	if ports != "" {
		if t.Ports, err = ParsePortRange(ports); err != nil {
			return NATTarget{}, err
		}
		if t.Ports.Start == 0 {
			return NATTarget{}, fmt.Errorf("NAT target %q: port 0 is not a valid port", s)
		}
	}
	if base != 0 && (t.Ports.IsZero() || int(base)+int(t.Ports.End-t.Ports.Start) > 65535) {
		return NATTarget{}, fmt.Errorf("NAT target %q: a base port needs a port range that fits above it", s)
	}
	t.Base = base
	return t, nil
}

// Opt121Route is a DHCP classless static route (RFC 3442). Text form
// "DEST=GATEWAY", e.g. "10.1.0.0/16=10.0.0.254".
type Opt121Route struct {
	Destination netip.Prefix
	Gateway     netip.Addr
}

func (r Opt121Route) String() string { return r.Destination.String() + "=" + r.Gateway.String() }

// MarshalText renders DEST=GATEWAY.
func (r Opt121Route) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText parses DEST=GATEWAY.
func (r *Opt121Route) UnmarshalText(b []byte) error {
	dst, gw, ok := strings.Cut(string(b), "=")
	p, err := netip.ParsePrefix(dst)
	if !ok || err != nil {
		return fmt.Errorf("%q is not a classless route (want 10.1.0.0/16=10.0.0.254)", b)
	}
	g, err := netip.ParseAddr(gw)
	if err != nil || !p.Addr().Is4() || !g.Is4() {
		return fmt.Errorf("%q is not a classless route (want IPv4 10.1.0.0/16=10.0.0.254)", b)
	}
	*r = Opt121Route{p.Masked(), g}
	return nil
}

// PortSource is a source a secured port may send from (Port.Sources):
// frames from MAC whose IP source (or ARP sender, or neighbor
// advertisement target) is in Prefix. Text form "MAC=PREFIX", e.g.
// "fa:16:3e:01:02:03=10.0.0.5/32".
type PortSource struct {
	MAC    packet.MAC
	Prefix netip.Prefix
}

func (s PortSource) String() string { return s.MAC.String() + "=" + s.Prefix.String() }

// MarshalText renders MAC=PREFIX.
func (s PortSource) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses MAC=PREFIX.
func (s *PortSource) UnmarshalText(b []byte) error {
	m, p, ok := strings.Cut(string(b), "=")
	mac, err := packet.ParseMAC(m)
	if !ok || err != nil || mac.IsZero() || mac.IsMulticast() {
		return fmt.Errorf("%q is not a port source (want a unicast MAC=PREFIX, e.g. fa:16:3e:01:02:03=10.0.0.5/32)", b)
	}
	pfx, err := netip.ParsePrefix(p)
	if err != nil || pfx.Addr().Zone() != "" {
		return fmt.Errorf("%q is not a port source (want MAC=PREFIX, e.g. fa:16:3e:01:02:03=10.0.0.5/32)", b)
	}
	*s = PortSource{mac, pfx.Masked()}
	return nil
}

// FamilyOf names an address family for messages.
func FamilyOf(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// ErrNotFound is returned (wrapped) when an object does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned (wrapped) when a write conflicts with the stored
// state: a stale revision, a taken unique value, an object still in use.
var ErrConflict = errors.New("conflict")

// DHCPOption is an extra DHCP option handed to one host (Neutron's
// extra_dhcp_opts): an option code and its value as an operator writes it
// (addresses separated by commas, text, or a number). Text form
// "CODE=VALUE", e.g. "66=tftp.example.com" or "42=10.0.0.1,10.0.0.2".
type DHCPOption struct {
	Code  uint8
	Value string
}

func (o DHCPOption) String() string { return strconv.Itoa(int(o.Code)) + "=" + o.Value }

// MarshalText renders CODE=VALUE.
func (o DHCPOption) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText parses CODE=VALUE and refuses a value its code cannot
// carry.
func (o *DHCPOption) UnmarshalText(b []byte) error {
	c, v, ok := strings.Cut(string(b), "=")
	n, err := strconv.ParseUint(c, 10, 8)
	if !ok || err != nil {
		return fmt.Errorf("%q is not a DHCP option (want CODE=VALUE, e.g. 66=tftp.example.com)", b)
	}
	x := DHCPOption{Code: uint8(n), Value: v}
	if _, err := x.Encode(); err != nil {
		return err
	}
	*o = x
	return nil
}

// dhcpOptionTypes are the options a host may be given, by the type of
// their value (RFC 2132 and the OVN set Neutron maps extra_dhcp_opts to).
// The others (message type, lease, server id, parameter lists…) are the
// DHCP server's own.
var dhcpOptionTypes = map[uint8]string{
	1: "ip", 3: "ips", 6: "ips", 7: "ips", 9: "ips", 16: "ip", 41: "ips", 42: "ips", 150: "ips",
	15: "text", 66: "text", 67: "text", 210: "text", 252: "text",
	19: "u8", 23: "u8", 31: "u8", 36: "u8", 37: "u8",
	26: "u16", 35: "u32", 38: "u32",
}

// DHCPOptionKnown reports whether a host may be given option code.
func DHCPOptionKnown(code uint8) bool { _, ok := dhcpOptionTypes[code]; return ok }

// Encode is the option's value as it goes on the wire (without code and
// length).
func (o DHCPOption) Encode() ([]byte, error) {
	bad := func(what string) error {
		return fmt.Errorf("DHCP option %d: %q is not %s", o.Code, o.Value, what)
	}
	switch dhcpOptionTypes[o.Code] {
	case "ip", "ips":
		var out []byte
		for _, s := range strings.Split(o.Value, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(s))
			if err != nil || !a.Unmap().Is4() {
				return nil, bad("a list of IPv4 addresses")
			}
			b := a.Unmap().As4()
			out = append(out, b[:]...)
		}
		if dhcpOptionTypes[o.Code] == "ip" && len(out) != 4 {
			return nil, bad("one IPv4 address")
		}
		if len(out) > 252 {
			return nil, bad("a list short enough for one option")
		}
		return out, nil
	case "text":
		if o.Value == "" || len(o.Value) > 255 {
			return nil, bad("a text of 1 to 255 bytes")
		}
		return []byte(o.Value), nil
	case "u8", "u16", "u32":
		bits := map[string]int{"u8": 8, "u16": 16, "u32": 32}[dhcpOptionTypes[o.Code]]
		n, err := strconv.ParseUint(strings.TrimSpace(o.Value), 10, bits)
		if err != nil {
			return nil, bad(fmt.Sprintf("an unsigned %d-bit number", bits))
		}
		out := make([]byte, bits/8)
		for i := range out {
			out[len(out)-1-i] = byte(n >> (8 * i))
		}
		return out, nil
	}
	return nil, fmt.Errorf("DHCP option %d cannot be set per host", o.Code)
}
