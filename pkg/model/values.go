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

// ParseNATTarget parses "10.0.0.5", "10.0.0.5-10.0.0.9:1024-65535", "[2001:db8::1]:80".
func ParseNATTarget(s string) (NATTarget, error) {
	bad := fmt.Errorf("%q is not a NAT target (want IP[-IP][:PORT[-PORT]])", s)
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
