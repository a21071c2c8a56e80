package dhcp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// The test bridge: 10.0.0.0/24 with a gateway, two DNS servers, one
// classless route, no MTU of its own (so the overlay's 1450), and one fixed
// host.
var (
	hostMAC = packet.MAC{0x02, 0x00, 0x00, 0x00, 0x00, 0x05}
	poolMAC = packet.MAC{0x02, 0x00, 0x00, 0x00, 0x01, 0x01}
	t0      = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
)

const overlayMTU = 1450

func testDHCPSubnet() model.DHCPSubnet {
	return model.DHCPSubnet{
		Meta:       model.Meta{ID: "sub-1"},
		Subnet:     netip.MustParsePrefix("10.0.0.0/24"),
		Gateway:    netip.MustParseAddr("10.0.0.1"),
		DNSServers: []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("8.8.8.8")},
		Opt121Routes: []model.Opt121Route{{
			Destination: netip.MustParsePrefix("10.1.0.0/16"), Gateway: netip.MustParseAddr("10.0.0.254"),
		}},
	}
}

func testHosts() []model.DHCPHost {
	return []model.DHCPHost{{DHCPSubnetID: "sub-1", Name: "vm5", MAC: hostMAC, Address: netip.MustParseAddr("10.0.0.5")}}
}

func mustSubnet(t testing.TB, d model.DHCPSubnet, hosts []model.DHCPHost, mtu uint16) *Subnet {
	t.Helper()
	s, err := NewSubnet(d, hosts, mtu)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testServer(t testing.TB) *Server {
	return NewServer(Config{}, mustSubnet(t, testDHCPSubnet(), testHosts(), overlayMTU))
}

func hw(m packet.MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }

func ip4(s string) net.IP { return net.ParseIP(s).To4() }

// msg builds a client message of type mt from mac with dhcpv4's own
// constructors and modifiers, as an independent encoder of the input.
func msg(t testing.TB, mt dhcpv4.MessageType, mac packet.MAC, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(hw(mac)), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// clientFrame wraps m as the VM sends it: from its MAC and ciaddr (or
// 0.0.0.0) port 68 to the broadcast address port 67, with both checksums.
func clientFrame(m *dhcpv4.DHCPv4) []byte {
	payload := m.ToBytes()
	src := [4]byte{}
	if m.ClientIPAddr != nil {
		copy(src[:], m.ClientIPAddr.To4())
	}
	return udpFrame(packet.MAC(m.ClientHWAddr[:6]), packet.BroadcastMAC, src, [4]byte{255, 255, 255, 255}, 68, 67, payload)
}

func udpFrame(src, dst packet.MAC, srcIP, dstIP [4]byte, sport, dport uint16, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:], dst[:])
	copy(f[6:], src[:])
	f[12], f[13] = 0x08, 0x00
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	copy(ip[12:], srcIP[:])
	copy(ip[16:], dstIP[:])
	binary.BigEndian.PutUint16(ip[10:], ^onesSum(ip[:20]))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	binary.BigEndian.PutUint16(udp[6:], ^onesSum(pseudo(ip), udp))
	return f
}

// onesSum is a second, deliberately different implementation of the
// Internet checksum's one's-complement sum, to check the package's.
func onesSum(parts ...[]byte) uint16 {
	var all []byte
	for _, p := range parts {
		all = append(all, p...)
	}
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint64
	for i := 0; i < len(all); i += 2 {
		s += uint64(all[i])<<8 + uint64(all[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

func pseudo(ip []byte) []byte {
	p := make([]byte, 12)
	copy(p, ip[12:20])
	p[9] = 17
	binary.BigEndian.PutUint16(p[10:], binary.BigEndian.Uint16(ip[2:])-uint16(ip[0]&0xf)*4)
	return p
}

// reply is a reply frame taken apart.
type reply struct {
	ethDst, ethSrc packet.MAC
	ipSrc, ipDst   netip.Addr
	m              *dhcpv4.DHCPv4
}

// checkReply checks every header of a reply frame the way a strict client
// does (udhcpc drops replies whose IP or UDP checksum is wrong), then parses
// the DHCP message with dhcpv4. It returns an error rather than failing so
// that the fuzz test can use it too.
func checkReply(f []byte) (reply, error) {
	var r reply
	if len(f) < 14+20+8+300 {
		return r, fmt.Errorf("frame of %d bytes is shorter than a padded BOOTP reply", len(f))
	}
	copy(r.ethDst[:], f[0:6])
	copy(r.ethSrc[:], f[6:12])
	if f[12] != 0x08 || f[13] != 0 {
		return r, fmt.Errorf("ethertype %x", f[12:14])
	}
	ip := f[14:]
	if ip[0] != 0x45 {
		return r, fmt.Errorf("IP version/IHL byte %#x", ip[0])
	}
	if tot := int(binary.BigEndian.Uint16(ip[2:])); tot != len(ip) || tot > 576 {
		return r, fmt.Errorf("IP total length %d, frame carries %d (max 576)", tot, len(ip))
	}
	if ip[8] == 0 || ip[9] != 17 || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return r, fmt.Errorf("TTL %d proto %d frag %x", ip[8], ip[9], ip[6:8])
	}
	if s := onesSum(ip[:20]); s != 0xffff {
		return r, fmt.Errorf("IPv4 header checksum does not verify (sum %#x)", s)
	}
	r.ipSrc = netip.AddrFrom4([4]byte(ip[12:16]))
	r.ipDst = netip.AddrFrom4([4]byte(ip[16:20]))
	udp := ip[20:]
	if sp, dp := binary.BigEndian.Uint16(udp[0:]), binary.BigEndian.Uint16(udp[2:]); sp != 67 || dp != 68 {
		return r, fmt.Errorf("UDP ports %d→%d, want 67→68", sp, dp)
	}
	if ul := int(binary.BigEndian.Uint16(udp[4:])); ul != len(udp) {
		return r, fmt.Errorf("UDP length %d, datagram carries %d", ul, len(udp))
	}
	if binary.BigEndian.Uint16(udp[6:]) == 0 {
		return r, fmt.Errorf("no UDP checksum")
	}
	if s := onesSum(pseudo(ip), udp); s != 0xffff {
		return r, fmt.Errorf("UDP checksum does not verify (sum %#x)", s)
	}
	m, err := dhcpv4.FromBytes(udp[8:])
	if err != nil {
		return r, fmt.Errorf("dhcpv4 cannot parse the reply: %v", err)
	}
	if m.OpCode != dhcpv4.OpcodeBootReply || m.HWType != 1 || len(m.ClientHWAddr) != 6 {
		return r, fmt.Errorf("op %v htype %v hlen %d", m.OpCode, m.HWType, len(m.ClientHWAddr))
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak:
	default:
		return r, fmt.Errorf("message type %v", m.MessageType())
	}
	if !m.ServerIdentifier().Equal(r.ipSrc.AsSlice()) {
		return r, fmt.Errorf("server identifier %v but IP source %v", m.ServerIdentifier(), r.ipSrc)
	}
	r.m = m
	return r, nil
}

// handle decodes frame as the datapath does and hands it to srv.
func handle(srv *Server, frame []byte, now time.Time, out []byte) (int, bool) {
	var p packet.Parsed
	p.Decode(frame)
	return srv.Handle(&p, now, out)
}

// run hands m to srv and returns the checked reply, or ok=false.
func run(t testing.TB, srv *Server, now time.Time, m *dhcpv4.DHCPv4) (reply, bool) {
	t.Helper()
	out := make([]byte, MaxReplyLen)
	n, ok := handle(srv, clientFrame(m), now, out)
	if !ok {
		return reply{}, false
	}
	r, err := checkReply(out[:n])
	if err != nil {
		t.Fatalf("bad reply to %v: %v", m.MessageType(), err)
	}
	if r.m.TransactionID != m.TransactionID {
		t.Errorf("xid %v, request had %v", r.m.TransactionID, m.TransactionID)
	}
	if r.m.ClientHWAddr.String() != m.ClientHWAddr.String() {
		t.Errorf("chaddr %v, request had %v", r.m.ClientHWAddr, m.ClientHWAddr)
	}
	if r.ethSrc != DefaultServerMAC {
		t.Errorf("Ethernet source %v", r.ethSrc)
	}
	return r, true
}

// mustRun is run for a message that must be answered.
func mustRun(t testing.TB, srv *Server, now time.Time, m *dhcpv4.DHCPv4) reply {
	t.Helper()
	r, ok := run(t, srv, now, m)
	if !ok {
		t.Fatalf("no reply to %v from %v; stats %+v", m.MessageType(), m.ClientHWAddr, srv.Stats())
	}
	return r
}

// dora runs DISCOVER then REQUEST for mac and returns the ACK.
func dora(t testing.TB, srv *Server, now time.Time, mac packet.MAC) reply {
	t.Helper()
	offer := mustRun(t, srv, now, msg(t, dhcpv4.MessageTypeDiscover, mac))
	if offer.m.MessageType() != dhcpv4.MessageTypeOffer {
		t.Fatalf("got %v, want OFFER", offer.m.MessageType())
	}
	req, err := dhcpv4.NewRequestFromOffer(offer.m)
	if err != nil {
		t.Fatal(err)
	}
	ack := mustRun(t, srv, now, req)
	if ack.m.MessageType() != dhcpv4.MessageTypeAck || !ack.m.YourIPAddr.Equal(offer.m.YourIPAddr) {
		t.Fatalf("got %v for %v, want ACK for the offered %v", ack.m.MessageType(), ack.m.YourIPAddr, offer.m.YourIPAddr)
	}
	return ack
}

func yiaddr(r reply) netip.Addr {
	a, _ := netip.AddrFromSlice(r.m.YourIPAddr.To4())
	return a
}

// dropsOf returns how many frames srv dropped for reason r.
func dropsOf(srv *Server, r DropReason) uint64 { return srv.Stats().Drops[r] }
