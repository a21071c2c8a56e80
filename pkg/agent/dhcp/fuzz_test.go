package dhcp

import (
	"encoding/binary"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"

	"github.com/nagare/nagare/pkg/packet"
)

// Offsets into a client frame built by clientFrame.
const (
	offIP   = 14
	offUDP  = offIP + 20
	offDHCP = offUDP + 8
	offOpts = offDHCP + dhcpHdrLen
)

// fixIP recomputes the IPv4 header checksum after a mutation, so that the
// mutation under test, not the checksum, is what Handle sees.
func fixIP(f []byte) {
	binary.BigEndian.PutUint16(f[offIP+10:], 0)
	binary.BigEndian.PutUint16(f[offIP+10:], ^onesSum(f[offIP:offIP+20]))
}

// withOptions rebuilds a DISCOVER frame from hostMAC with raw option bytes.
func withOptions(t testing.TB, opts ...byte) []byte {
	hdr := msg(t, dhcpv4.MessageTypeDiscover, hostMAC).ToBytes()[:dhcpHdrLen]
	return udpFrame(hostMAC, packet.BroadcastMAC, [4]byte{}, [4]byte{255, 255, 255, 255}, 68, 67, append(hdr, opts...))
}

func TestMalformed(t *testing.T) {
	valid := func(t *testing.T) []byte { return clientFrame(msg(t, dhcpv4.MessageTypeDiscover, hostMAC)) }
	setIPLen := func(f []byte, n int) { binary.BigEndian.PutUint16(f[offIP+2:], uint16(n)); fixIP(f) }
	tests := []struct {
		name  string
		frame func(t *testing.T) []byte
		want  DropReason
	}{
		{"empty", func(*testing.T) []byte { return nil }, DropTruncated},
		{"short Ethernet", func(t *testing.T) []byte { return valid(t)[:10] }, DropTruncated},
		{"ARP", func(t *testing.T) []byte { f := valid(t); f[12], f[13] = 0x08, 0x06; return f }, DropNotDHCP},
		{"VLAN tagged", func(t *testing.T) []byte { f := valid(t); f[12], f[13] = 0x81, 0x00; return f }, DropNotDHCP},
		{"short IPv4", func(t *testing.T) []byte { return valid(t)[:offIP+12] }, DropTruncated},
		{"IPv6 version", func(t *testing.T) []byte { f := valid(t); f[offIP] = 0x65; fixIP(f); return f }, DropBadIPv4},
		{"IHL 4", func(t *testing.T) []byte { f := valid(t); f[offIP] = 0x44; return f }, DropBadIPv4},
		{"IHL past the frame", func(t *testing.T) []byte { f := valid(t)[:offIP+40]; f[offIP] = 0x4f; return f }, DropTruncated},
		{"total length past the frame", func(t *testing.T) []byte { f := valid(t); setIPLen(f, len(f)); return f }, DropTruncated},
		{"total length below the header", func(t *testing.T) []byte { f := valid(t); setIPLen(f, 12); return f }, DropBadIPv4},
		{"more fragments", func(t *testing.T) []byte { f := valid(t); f[offIP+6] = 0x20; fixIP(f); return f }, DropFragment},
		{"fragment offset", func(t *testing.T) []byte { f := valid(t); f[offIP+7] = 1; fixIP(f); return f }, DropFragment},
		{"TCP", func(t *testing.T) []byte { f := valid(t); f[offIP+9] = 6; fixIP(f); return f }, DropNotDHCP},
		{"bad IPv4 checksum", func(t *testing.T) []byte { f := valid(t); f[offIP+10] ^= 0xff; return f }, DropBadChecksum},
		{"UDP to port 68", func(t *testing.T) []byte { f := valid(t); f[offUDP+3] = 68; return f }, DropNotDHCP},
		{"UDP length below header", func(t *testing.T) []byte { f := valid(t); f[offUDP+4], f[offUDP+5] = 0, 4; return f }, DropBadUDP},
		{"UDP length past the datagram", func(t *testing.T) []byte { f := valid(t); f[offUDP+4], f[offUDP+5] = 0xff, 0xff; return f }, DropBadUDP},
		{"short UDP", func(t *testing.T) []byte { f := valid(t)[:offUDP+4]; setIPLen(f, 24); return f }, DropTruncated},
		{"DHCP shorter than its header", func(t *testing.T) []byte {
			f := valid(t)[:offDHCP+200]
			setIPLen(f, 28+200)
			binary.BigEndian.PutUint16(f[offUDP+4:], 208)
			return f
		}, DropTruncated},
		{"BOOTREPLY", func(t *testing.T) []byte { f := valid(t); f[offDHCP] = 2; return f }, DropBadOp},
		{"not Ethernet", func(t *testing.T) []byte { f := valid(t); f[offDHCP+1] = 6; return f }, DropBadHardware},
		{"hlen 16", func(t *testing.T) []byte { f := valid(t); f[offDHCP+2] = 16; return f }, DropBadHardware},
		{"multicast chaddr", func(t *testing.T) []byte { f := valid(t); f[6] |= 1; f[offDHCP+28] |= 1; return f }, DropBadHardware},
		{"chaddr is not the source", func(t *testing.T) []byte { f := valid(t); f[offDHCP+33] ^= 1; return f }, DropChaddrMismatch},
		{"bad cookie", func(t *testing.T) []byte { f := valid(t); f[offDHCP+239]++; return f }, DropBadCookie},
		{"relayed", func(t *testing.T) []byte { f := valid(t); f[offDHCP+24] = 10; return f }, DropRelayed},
		{"option overruns", func(t *testing.T) []byte { return withOptions(t, 53, 1, 1, 50, 10, 1, 2) }, DropBadOptions},
		{"option without length", func(t *testing.T) []byte { return withOptions(t, 53, 1, 1, 50) }, DropBadOptions},
		{"message type of length 2", func(t *testing.T) []byte { return withOptions(t, 53, 2, 1, 1, 255) }, DropBadOptions},
		{"message type twice", func(t *testing.T) []byte { return withOptions(t, 53, 1, 1, 53, 1, 3, 255) }, DropBadOptions},
		{"requested IP of length 3", func(t *testing.T) []byte { return withOptions(t, 53, 1, 1, 50, 3, 10, 0, 0, 255) }, DropBadOptions},
		{"server identifier twice", func(t *testing.T) []byte {
			return withOptions(t, 53, 1, 3, 54, 4, 10, 0, 0, 1, 54, 4, 10, 0, 0, 1, 255)
		}, DropBadOptions},
		{"BOOTP", func(t *testing.T) []byte { return withOptions(t, 255) }, DropNoMessageType},
		{"message type 0", func(t *testing.T) []byte { return withOptions(t, 53, 1, 0, 255) }, DropBadOptions},
		{"LEASEQUERY", func(t *testing.T) []byte { return withOptions(t, 53, 1, 10, 255) }, DropBadMessageType},
		{"ACK from a client", func(t *testing.T) []byte { return withOptions(t, 53, 1, 5, 255) }, DropBadMessageType},
		{"REQUEST naming no address", func(t *testing.T) []byte { return clientFrame(msg(t, dhcpv4.MessageTypeRequest, hostMAC)) }, DropBadRequest},
		{"SELECTING without requested address", func(t *testing.T) []byte {
			return clientFrame(msg(t, dhcpv4.MessageTypeRequest, hostMAC, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4("10.0.0.1")))))
		}, DropBadRequest},
		{"INFORM without ciaddr", func(t *testing.T) []byte { return clientFrame(msg(t, dhcpv4.MessageTypeInform, hostMAC)) }, DropBadRequest},
		{"DECLINE without address", func(t *testing.T) []byte { return clientFrame(msg(t, dhcpv4.MessageTypeDecline, hostMAC)) }, DropBadRequest},
		{"INFORM from another network", func(t *testing.T) []byte {
			return clientFrame(msg(t, dhcpv4.MessageTypeInform, hostMAC, dhcpv4.WithClientIP(ip4("192.168.1.1"))))
		}, DropNoSubnet},
		{"RELEASE to another server", func(t *testing.T) []byte {
			return clientFrame(msg(t, dhcpv4.MessageTypeRelease, hostMAC, dhcpv4.WithClientIP(ip4("10.0.0.5")),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4("10.0.0.99")))))
		}, DropNotForUs},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := testServer(t)
			if _, ok := handle(srv, tc.frame(t), t0, make([]byte, MaxReplyLen)); ok {
				t.Fatal("answered a frame it should drop")
			}
			want := Stats{}
			want.Drops[tc.want] = 1
			if got := srv.Stats(); got != want {
				t.Errorf("stats %+v, want one drop for %v", got.Drops, tc.want)
			}
		})
	}
}

// TestTolerated: things a real client or datapath does that are not errors.
func TestTolerated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame func(t *testing.T) []byte
	}{
		{"Ethernet padding after the datagram", func(t *testing.T) []byte {
			return append(clientFrame(msg(t, dhcpv4.MessageTypeDiscover, hostMAC)), 0xde, 0xad, 0xbe, 0xef)
		}},
		{"no UDP checksum (offloaded)", func(t *testing.T) []byte {
			f := clientFrame(msg(t, dhcpv4.MessageTypeDiscover, hostMAC))
			f[offUDP+6], f[offUDP+7] = 0, 0
			return f
		}},
		{"partial UDP checksum (offloaded)", func(t *testing.T) []byte {
			f := clientFrame(msg(t, dhcpv4.MessageTypeDiscover, hostMAC))
			f[offUDP+6] ^= 0x5a
			return f
		}},
		{"IP options", func(t *testing.T) []byte {
			f := clientFrame(msg(t, dhcpv4.MessageTypeDiscover, hostMAC))
			g := append(append(append([]byte{}, f[:offUDP]...), 1, 1, 1, 0), f[offUDP:]...) // NOP NOP NOP EOL
			g[offIP] = 0x46
			binary.BigEndian.PutUint16(g[offIP+2:], uint16(len(g)-offIP))
			binary.BigEndian.PutUint16(g[offIP+10:], 0)
			binary.BigEndian.PutUint16(g[offIP+10:], ^onesSum(g[offIP:offIP+24]))
			return g
		}},
		{"no END option", func(t *testing.T) []byte { return withOptions(t, 53, 1, 1) }},
		{"pad options and unknown options", func(t *testing.T) []byte { return withOptions(t, 0, 0, 250, 2, 9, 9, 53, 1, 1, 0, 255, 77) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testServer(t)
			out := make([]byte, MaxReplyLen)
			n, ok := handle(srv, tc.frame(t), t0, out)
			if !ok {
				t.Fatalf("dropped; stats %+v", srv.Stats().Drops)
			}
			if _, err := checkReply(out[:n]); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// FuzzHandle: whatever a VM sends, Handle does not panic, reads only what
// it is given, and anything it answers is a well-formed reply to a request
// with the same transaction ID.
func FuzzHandle(f *testing.F) {
	m := func(mt dhcpv4.MessageType, mac packet.MAC, mods ...dhcpv4.Modifier) []byte {
		return clientFrame(msg(f, mt, mac, mods...))
	}
	f.Add(m(dhcpv4.MessageTypeDiscover, hostMAC))
	f.Add(m(dhcpv4.MessageTypeDiscover, poolMAC, dhcpv4.WithBroadcast(true)))
	f.Add(m(dhcpv4.MessageTypeRequest, hostMAC, dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip4("10.0.0.1"))),
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4("10.0.0.5")))))
	f.Add(m(dhcpv4.MessageTypeRequest, poolMAC, dhcpv4.WithClientIP(ip4("10.0.0.9"))))
	f.Add(m(dhcpv4.MessageTypeRequest, poolMAC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4("192.168.0.9")))))
	f.Add(m(dhcpv4.MessageTypeInform, hostMAC, dhcpv4.WithClientIP(ip4("10.0.0.5"))))
	f.Add(m(dhcpv4.MessageTypeRelease, poolMAC, dhcpv4.WithClientIP(ip4("10.0.0.9"))))
	f.Add(m(dhcpv4.MessageTypeDecline, poolMAC, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip4("10.0.0.9")))))
	f.Add(withOptions(f, 53, 1, 1, 50, 10, 1, 2))

	srv := testServer(f)
	out := make([]byte, MaxReplyLen)
	f.Fuzz(func(t *testing.T, frame []byte) {
		in := append([]byte(nil), frame...)
		n, ok := handle(srv, frame, t0, out)
		if string(in) != string(frame) {
			t.Fatal("Handle modified its input")
		}
		if !ok {
			if n != 0 {
				t.Fatalf("no reply but n = %d", n)
			}
			return
		}
		r, err := checkReply(out[:n])
		if err != nil {
			t.Fatalf("malformed reply: %v", err)
		}
		if [4]byte(r.m.TransactionID) != [4]byte(frame[offDHCP+4:offDHCP+8]) {
			t.Fatalf("xid %v does not match the request", r.m.TransactionID)
		}
		if r.ethDst != packet.BroadcastMAC && [6]byte(r.ethDst) != [6]byte(frame[6:12]) {
			t.Fatalf("reply to %v, neither broadcast nor the sender", r.ethDst)
		}
	})
}
