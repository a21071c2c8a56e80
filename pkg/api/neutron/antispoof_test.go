package neutron_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
	"github.com/nagare/nagare/pkg/sim"
)

// arpFrame is an ARP packet from ethSrc whose payload claims sha and spa.
func arpFrame(op uint16, ethSrc, sha packet.MAC, spa, tpa string) []byte {
	b := make([]byte, 42)
	copy(b[0:6], packet.BroadcastMAC[:])
	copy(b[6:12], ethSrc[:])
	binary.BigEndian.PutUint16(b[12:], packet.EtherTypeARP)
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], packet.EtherTypeIPv4)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], op)
	copy(a[8:14], sha[:])
	s, t := netip.MustParseAddr(spa).As4(), netip.MustParseAddr(tpa).As4()
	copy(a[14:18], s[:])
	copy(a[24:28], t[:])
	return b
}

// icmp6Frame is an ICMPv6 message with hop limit 255, as neighbor
// discovery must have, to the all-nodes group.
func icmp6Frame(ethSrc packet.MAC, src string, typ uint8, body []byte) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr("ff02::1")
	b := make([]byte, 14+40+4+len(body))
	copy(b[0:6], []byte{0x33, 0x33, 0, 0, 0, 1})
	copy(b[6:12], ethSrc[:])
	binary.BigEndian.PutUint16(b[12:], packet.EtherTypeIPv6)
	ip := b[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(4+len(body)))
	ip[6], ip[7] = packet.IPProtoICMPv6, 255
	s16, d16 := s.As16(), d.As16()
	copy(ip[8:24], s16[:])
	copy(ip[24:40], d16[:])
	m := ip[40:]
	m[0] = typ
	copy(m[4:], body)
	binary.BigEndian.PutUint16(m[2:], packet.L4Checksum(s, d, packet.IPProtoICMPv6, m))
	return b
}

// neighborAdvert is an unsolicited advertisement from ethSrc and src that
// target is at ethSrc.
func neighborAdvert(ethSrc packet.MAC, src, target string) []byte {
	body := make([]byte, 4+16+8)
	body[0] = packet.NDOverride
	t := netip.MustParseAddr(target).As16()
	copy(body[4:20], t[:])
	body[20], body[21] = 2, 1 // target link-layer address
	copy(body[22:28], ethSrc[:])
	return icmp6Frame(ethSrc, src, packet.ICMPv6NeighborAdvert, body)
}

// TestTranslationAntiSpoofing runs the simulation over ports created
// through the Neutron API and checks that port security stops what a VM
// claims about addresses that are not its own, in ARP and in IPv6
// neighbor discovery, while its own ARP, ND, DHCP and allowed address
// pairs pass, and a port without port security is not filtered at all.
func TestTranslationAntiSpoofing(t *testing.T) {
	e := newEnv(t)
	c := e.admin
	mk := func(path, body, key string) map[string]any {
		t.Helper()
		st, doc := e.raw(c, "POST", path, body)
		if st != 201 {
			t.Fatalf("POST %s: %d %v", path, st, doc)
		}
		return doc[key].(map[string]any)
	}
	id := func(m map[string]any) string { return m["id"].(string) }
	mac := func(m map[string]any) packet.MAC {
		a, err := packet.ParseMAC(m["mac_address"].(string))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	host, err := e.srv.Store().Create(e.ctx, &model.Host{Name: "compute-1"})
	if err != nil {
		t.Fatal(err)
	}
	n := mk("/v2.0/networks", `{"network": {"name": "n"}}`, "network")
	s4 := mk("/v2.0/subnets", `{"subnet": {"network_id": "`+id(n)+`", "ip_version": 4, "cidr": "10.0.1.0/24"}}`, "subnet")
	s6 := mk("/v2.0/subnets", `{"subnet": {"network_id": "`+id(n)+`", "ip_version": 6, "cidr": "2001:db8:1::/64"}}`, "subnet")
	port := func(v4, v6, extra string) map[string]any {
		return mk("/v2.0/ports", `{"port": {"network_id": "`+id(n)+`", "binding:host_id": "compute-1", "fixed_ips": [`+
			`{"subnet_id": "`+id(s4)+`", "ip_address": "`+v4+`"}, {"subnet_id": "`+id(s6)+`", "ip_address": "`+v6+`"}]`+extra+`}}`, "port")
	}
	vm1 := port("10.0.1.10", "2001:db8:1::10", "")
	vm2 := port("10.0.1.20", "2001:db8:1::20", "")
	pairMAC := packet.MAC{0xfa, 0x16, 0x3e, 0xaa, 0xbb, 0xcc}
	vm3 := port("10.0.1.30", "2001:db8:1::30", `, "allowed_address_pairs": [{"ip_address": "10.0.1.100"}, {"ip_address": "10.0.1.200", "mac_address": "`+pairMAC.String()+`"}]`)
	open := port("10.0.1.40", "2001:db8:1::40", `, "port_security_enabled": false, "security_groups": []`)
	m1, m2, m3, m4 := mac(vm1), mac(vm2), mac(vm3), mac(open)
	ll1 := lla(m1)

	var objs []model.Object
	for _, k := range model.Kinds() {
		if k.Internal {
			continue
		}
		l, _, err := e.srv.Store().List(e.ctx, k, "", "")
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, l...)
	}
	topo, err := sim.Build(objs)
	if err != nil {
		t.Fatal(err)
	}
	s := sim.NewSimulator(topo, sim.Config{HostID: host.GetMeta().ID})
	res := sim.NewResult()
	run := func(in map[string]any, frame []byte) (*sim.Result, *sim.Tracer) {
		var p packet.Parsed
		p.Decode(frame)
		if p.Drop != packet.DropNone {
			t.Fatalf("test frame is malformed: %v", p.Drop)
		}
		tr := &sim.Tracer{}
		s.Simulate(&sim.Input{InPortID: id(in), Pkt: &p, Frame: frame, Trace: tr}, res)
		return res, tr
	}
	rsBody, raBody := make([]byte, 4), make([]byte, 12)
	dhcp := make([]byte, 128)
	dn, err := packet.BuildProbe(dhcp, &packet.Probe{EthSrc: m1, EthDst: packet.BroadcastMAC, Src: netip.MustParseAddr("0.0.0.0"),
		Dst: netip.MustParseAddr("255.255.255.255"), Proto: packet.IPProtoUDP, SrcPort: 68, DstPort: 67})
	if err != nil {
		t.Fatal(err)
	}
	dad := make([]byte, 128)
	nn, err := packet.BuildNeighborSolicit(dad, m1, netip.IPv6Unspecified(), netip.MustParseAddr("2001:db8:1::10"))
	if err != nil {
		t.Fatal(err)
	}
	ns := make([]byte, 128)
	nsn, err := packet.BuildNeighborSolicit(ns, m1, ll1, netip.MustParseAddr("2001:db8:1::20"))
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name  string
		in    map[string]any
		frame []byte
		drop  bool
	}{
		{"own ARP request", vm1, arpFrame(packet.ARPRequest, m1, m1, "10.0.1.10", "10.0.1.20"), false},
		{"own ARP reply", vm1, arpFrame(packet.ARPReply, m1, m1, "10.0.1.10", "10.0.1.20"), false},
		{"ARP reply claiming another VM's address", vm1, arpFrame(packet.ARPReply, m1, m1, "10.0.1.20", "10.0.1.30"), true},
		{"ARP request from another VM's address", vm1, arpFrame(packet.ARPRequest, m1, m1, "10.0.1.20", "10.0.1.30"), true},
		{"ARP with a forged sender hardware address", vm1, arpFrame(packet.ARPReply, m1, m2, "10.0.1.10", "10.0.1.30"), true},
		{"ARP from another VM's MAC", vm1, arpFrame(packet.ARPReply, m2, m2, "10.0.1.20", "10.0.1.30"), true},
		{"own neighbor advertisement", vm1, neighborAdvert(m1, ll1.String(), "2001:db8:1::10"), false},
		{"own link-local advertised", vm1, neighborAdvert(m1, ll1.String(), ll1.String()), false},
		{"advertisement of another VM's address", vm1, neighborAdvert(m1, ll1.String(), "2001:db8:1::20"), true},
		{"advertisement of another VM's address from it", vm1, neighborAdvert(m1, "2001:db8:1::20", "2001:db8:1::20"), true},
		{"advertisement of another VM's link-local", vm1, neighborAdvert(m1, ll1.String(), lla(m2).String()), true},
		{"router solicitation", vm1, icmp6Frame(m1, ll1.String(), packet.ICMPv6RouterSolicit, rsBody), false},
		{"router advertisement", vm1, icmp6Frame(m1, ll1.String(), 134, raBody), true},
		{"neighbor solicitation", vm1, ns[:nsn], false},
		{"duplicate address detection", vm1, dad[:nn], false},
		{"DHCP discover", vm1, dhcp[:dn], false},
		{"allowed pair with the port's MAC", vm3, arpFrame(packet.ARPReply, m3, m3, "10.0.1.100", "10.0.1.10"), false},
		{"allowed pair with its own MAC", vm3, arpFrame(packet.ARPReply, pairMAC, pairMAC, "10.0.1.200", "10.0.1.10"), false},
		{"allowed pair's MAC, the other pair's address", vm3, arpFrame(packet.ARPReply, pairMAC, pairMAC, "10.0.1.100", "10.0.1.10"), true},
		{"the port's MAC, the pair's address", vm3, arpFrame(packet.ARPReply, m3, m3, "10.0.1.200", "10.0.1.10"), true},
		{"allowed pair's MAC inside the port's frame", vm3, arpFrame(packet.ARPReply, m3, pairMAC, "10.0.1.100", "10.0.1.10"), true},
		{"no port security: any ARP", open, arpFrame(packet.ARPReply, m4, m2, "10.0.1.20", "10.0.1.10"), false},
		{"no port security: any advertisement", open, neighborAdvert(m4, "2001:db8:1::20", "2001:db8:1::20"), false},
	} {
		r, tr := run(c.in, c.frame)
		switch {
		case c.drop && (r.Verdict != sim.Drop || r.Reason != sim.DropRuleDrop):
			t.Errorf("%s: %v/%v, want a rule's drop\n%s", c.name, r.Verdict, r.Reason, tr)
		case !c.drop && r.Verdict == sim.Drop:
			t.Errorf("%s: dropped (%v)\n%s", c.name, r.Reason, tr)
		}
	}
}

// lla is the EUI-64 link-local address of a MAC.
func lla(m packet.MAC) netip.Addr {
	return netip.AddrFrom16([16]byte{0xfe, 0x80, 8: m[0] ^ 2, 9: m[1], 10: m[2], 11: 0xff, 12: 0xfe, 13: m[3], 14: m[4], 15: m[5]})
}
