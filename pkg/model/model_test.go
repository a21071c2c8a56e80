package model

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

const (
	id1 = "11111111-1111-4111-8111-111111111111"
	id2 = "22222222-2222-4222-8222-222222222222"
)

func TestRegistry(t *testing.T) {
	if len(Kinds()) < 20 {
		t.Fatalf("only %d kinds registered", len(Kinds()))
	}
	for _, k := range Kinds() {
		if KindByName(k.Name) != k || KindByName(k.Plural) != k {
			t.Errorf("%s not registered by name and plural", k.Name)
		}
		if KindOf(k.New()) != k {
			t.Errorf("KindOf(New()) of %s is wrong", k.Name)
		}
		if k.Field("id") == nil || k.Field("revision") == nil {
			t.Errorf("%s lacks meta fields", k.Name)
		}
		for _, f := range k.Refs() {
			if KindByName(f.Ref) == nil {
				t.Errorf("%s.%s refs unknown kind %s", k.Name, f.JSON, f.Ref)
			}
		}
	}
	if f := RuleKind.Field("src"); f == nil || f.Inv != "inv_src" || f.CLI != "src" {
		t.Errorf("embedded Condition fields not flattened into rule: %+v", f)
	}
	for _, n := range []string{"arp_sha", "nd_target"} {
		if f := RuleKind.Field(n); f == nil || f.Inv != "inv_"+n || f.CLI != strings.ReplaceAll(n, "_", "-") || f.Doc == "" {
			t.Errorf("rule condition %s lacks its CLI word, inversion twin or doc: %+v", n, f)
		}
	}
	if f := PortKind.Field("interface_name"); !f.Unique || f.Scope != "host_id" {
		t.Errorf("interface_name should be unique per host: %+v", f)
	}
}

// decodeValidate is the API's create path without a store.
func decodeValidate(k *Kind, body string) (Object, error) {
	o := k.New()
	if err := Decode(k, []byte(body), o, true); err != nil {
		return nil, err
	}
	ApplyDefaults(o)
	return o, Validate(o)
}

func TestDecodeValidate(t *testing.T) {
	cases := []struct {
		kind  *Kind
		body  string
		field string // expected FieldError field; "" = valid
	}{
		{BridgeKind, `{"name":"internal"}`, ""},
		{BridgeKind, `{"name":"x","state":"sideways"}`, "state"},
		{BridgeKind, `{"name":"x","colour":"red"}`, "colour"},
		{BridgeKind, `{"name":1}`, "name"},
		{BridgeKind, `{"name":"x"`, "body"},
		{BridgeKind, `[1,2]`, "body"},
		{BridgeKind, `null`, "body"},
		{BridgeKind, `{"inbound_filter_id":"not-a-uuid"}`, "inbound_filter_id"},
		{BridgeKind, `{"id":"ABC"}`, "id"},
		{BridgeKind, `{"revision":5,"name":"ok"}`, ""},
		{TunnelZoneKind, `{"name":"tz","type":"vxlan"}`, ""},
		{TunnelZoneKind, `{"type":"gre"}`, "name"},
		{TunnelZoneKind, `{"name":"tz","type":"ipip"}`, "type"},
		{TunnelZoneMemberKind, `{"tunnel_zone_id":"` + id1 + `","host_id":"` + id2 + `","address":"192.168.100.201"}`, ""},
		{TunnelZoneMemberKind, `{"tunnel_zone_id":"` + id1 + `","host_id":"` + id2 + `","address":"2001:db8::1"}`, ""},
		{TunnelZoneMemberKind, `{"tunnel_zone_id":"` + id1 + `","host_id":"` + id2 + `","address":"0.0.0.0"}`, "address"},
		{TunnelZoneMemberKind, `{"tunnel_zone_id":"` + id1 + `","host_id":"` + id2 + `","address":"300.1.1.1"}`, "address"},
		{PortKind, `{"bridge_id":"` + id1 + `"}`, ""},
		{PortKind, `{}`, "bridge_id"},
		{PortKind, `{"bridge_id":"` + id1 + `","router_id":"` + id2 + `"}`, "router_id"},
		{PortKind, `{"bridge_id":"` + id1 + `","vlan":4095}`, "vlan"},
		{PortKind, `{"bridge_id":"` + id1 + `","vlan":-1}`, "vlan"},
		{PortKind, `{"bridge_id":"` + id1 + `","address":"10.0.0.1","network":"10.0.0.0/24"}`, "address"},
		{PortKind, `{"router_id":"` + id1 + `","address":"10.0.0.1","network":"10.0.0.0/24"}`, ""},
		{PortKind, `{"router_id":"` + id1 + `","address":"2001:db8::1","network":"2001:db8::/64"}`, ""},
		{PortKind, `{"router_id":"` + id1 + `","address":"10.0.1.1","network":"10.0.0.0/24"}`, "address"},
		{PortKind, `{"router_id":"` + id1 + `","address":"10.0.0.1"}`, "network"},
		{PortKind, `{"router_id":"` + id1 + `","mac":"01:00:5e:00:00:01"}`, "mac"},
		{PortKind, `{"router_id":"` + id1 + `","mac":"zz:00:5e:00:00:01"}`, "mac"},
		{PortKind, `{"router_id":"` + id1 + `","tunnel_key":7}`, "tunnel_key"},
		{PortKind, `{"bridge_id":"` + id1 + `","host_id":"` + id2 + `"}`, "interface_name"},
		{PortKind, `{"bridge_id":"` + id1 + `","host_id":"` + id2 + `","interface_name":"tap0"}`, ""},
		{PortKind, `{"bridge_id":"` + id1 + `","host_id":"` + id2 + `","interface_name":"a/b"}`, "interface_name"},
		{PortKind, `{"bridge_id":"` + id1 + `","host_id":"` + id2 + `","interface_name":"tap0","peer_id":"` + id1 + `"}`, "peer_id"},
		{PortKind, `{"bridge_id":"` + id1 + `","physical_network":"physnet1"}`, ""},
		{PortKind, `{"bridge_id":"` + id1 + `","physical_network":"physnet1","physical_vlan":100,"host_id":"` + id2 + `","interface_name":"eth1.100"}`, ""},
		{PortKind, `{"bridge_id":"` + id1 + `","physical_vlan":100}`, "physical_vlan"},
		{PortKind, `{"bridge_id":"` + id1 + `","physical_network":"physnet1","physical_vlan":4095}`, "physical_vlan"},
		{PortKind, `{"bridge_id":"` + id1 + `","physical_network":"phys:net"}`, "physical_network"},
		{PortKind, `{"bridge_id":"` + id1 + `","physical_network":"phys net"}`, "physical_network"},
		{PortKind, `{"router_id":"` + id1 + `","physical_network":"physnet1"}`, "physical_network"},
		{PortKind, `{"bridge_id":"` + id1 + `","physical_network":"physnet1","peer_id":"` + id2 + `"}`, "physical_network"},
		{PortKind, `{"bridge_id":"` + id1 + `","physical_network":"physnet1","vlan":5}`, "vlan"},
		{HostKind, `{"name":"gw1","physical_networks":["physnet1","physnet2"]}`, ""},
		{RouteKind, `{"router_id":"` + id1 + `","dst":"10.0.0.0/24","port_id":"` + id2 + `"}`, ""},
		{RouteKind, `{"router_id":"` + id1 + `","dst":"10.0.0.0/33","port_id":"` + id2 + `"}`, "dst"},
		{RouteKind, `{"router_id":"` + id1 + `","dst":"10.0.0.0/24"}`, "port_id"},
		{RouteKind, `{"router_id":"` + id1 + `","dst":"10.0.0.0/24","type":"blackhole"}`, ""},
		{RouteKind, `{"router_id":"` + id1 + `","dst":"::/0","gateway":"10.0.0.1","port_id":"` + id2 + `"}`, "gateway"},
		{RouteKind, `{"router_id":"` + id1 + `","dst":"::/0","src":"10.0.0.0/8","port_id":"` + id2 + `"}`, "src"},
		{RouteKind, `{"router_id":"` + id1 + `","dst":"10.0.0.0/24","port_id":"` + id2 + `","weight":70000}`, "weight"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"accept","dst":"10.0.0.0/8","proto":6,"dst_port":"80"}`, ""},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"accept","dst_port":"80"}`, "proto"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"accept","proto":6,"dst_port":"90-80"}`, "dst_port"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"jump"}`, "jump_chain_id"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"jump","jump_chain_id":"` + id1 + `"}`, "jump_chain_id"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"dnat"}`, "targets"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"dnat","targets":["172.16.20.100:80"]}`, ""},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"snat","targets":["10.0.0.1-10.0.0.0"]}`, "targets"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"accept","targets":["10.0.0.1"]}`, "targets"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"dance"}`, "type"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"drop","in_port_ids":["` + id2 + `","` + id2 + `"]}`, "in_port_ids"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"drop","src":"10.0.0.0/8","dst":"::/0"}`, "dst"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"accept","ethertype":2054,"arp_sha":"02:00:00:00:00:01","src":"10.0.0.5/32"}`, ""},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"drop","arp_sha":"02:00:00:00:00:01","inv_arp_sha":true}`, ""},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"accept","arp_sha":"02:00:00:00:00"}`, "arp_sha"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"accept","arp_sha":7}`, "arp_sha"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"accept","ethertype":34525,"proto":58,"src_port":"136","nd_target":"fe80::1/128"}`, ""},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"drop","nd_target":"2001:db8::/64","inv_nd_target":true}`, ""},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"accept","nd_target":"10.0.0.5/32"}`, "nd_target"},
		{RuleKind, `{"chain_id":"` + id1 + `","type":"accept","nd_target":"2001:db8::/129"}`, "nd_target"},
		{DHCPSubnetKind, `{"bridge_id":"` + id1 + `","subnet":"10.0.0.0/24","gateway":"10.0.0.1","mtu":1450,"opt121_routes":["10.1.0.0/16=10.0.0.254"]}`, ""},
		{DHCPSubnetKind, `{"bridge_id":"` + id1 + `","subnet":"10.0.0.0/24","gateway":"10.0.1.1"}`, "gateway"},
		{DHCPSubnetKind, `{"bridge_id":"` + id1 + `","subnet":"10.0.0.0/24","mtu":20}`, "mtu"},
		{DHCPSubnetKind, `{"bridge_id":"` + id1 + `","subnet":"10.0.0.0/24","dns_servers":["8.8.8.8","x"]}`, "dns_servers"},
		{DHCPSubnetKind, `{"bridge_id":"` + id1 + `","subnet":"10.0.0.0/24","opt121_routes":["10.1.0.0/16"]}`, "opt121_routes"},
		{DHCPHostKind, `{"dhcp_subnet_id":"` + id1 + `","mac":"02:00:00:00:00:05","address":"10.0.0.5"}`, ""},
		{DHCPHostKind, `{"dhcp_subnet_id":"` + id1 + `","address":"10.0.0.5"}`, "mac"},
		{PoolMemberKind, `{"pool_id":"` + id1 + `","address":"10.0.0.5","protocol_port":0}`, "protocol_port"},
		{PoolMemberKind, `{"pool_id":"` + id1 + `","address":"10.0.0.5","protocol_port":80,"weight":300}`, "weight"},
		{HealthMonitorKind, `{"type":"http","delay":0}`, ""},
		{HealthMonitorKind, `{"type":"http","max_retries":11}`, "max_retries"},
		{HealthMonitorKind, `{"type":"http","max_retries_down":11}`, "max_retries_down"},
		{HostKind, `{"name":"h","alive":true}`, "alive"},
		{RouterKind, `{"asn":64512}`, ""},
		{RouterKind, `{"asn":4294967296}`, "asn"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1"}`, ""},
		{BGPPeerKind, `{"router_id":"` + id1 + `","port_id":"` + id2 + `","asn":65001,"address":"2001:db8::1","bfd":"off"}`, ""},
		{BGPPeerKind, `{"router_id":"` + id1 + `","address":"198.51.100.1"}`, "asn"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001}`, "address"},
		{BGPPeerKind, `{"asn":65001,"address":"198.51.100.1"}`, "router_id"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"0.0.0.0"}`, "address"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"224.0.0.5"}`, "address"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"127.0.0.1"}`, "address"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","bfd":"maybe"}`, "bfd"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","bfd_interval":5}`, "bfd_interval"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","bfd_multiplier":0}`, ""},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","bfd_multiplier":256}`, "bfd_multiplier"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","keepalive":10,"hold_time":20}`, "hold_time"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","hold_time":2}`, "hold_time"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","password":"` + strings.Repeat("k", 80) + `"}`, ""},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","password":"` + strings.Repeat("k", 81) + `"}`, "password"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","password":"tab\tinside"}`, "password"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","password":"é"}`, "password"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","max_prefixes":2000000}`, "max_prefixes"},
		{BGPPeerKind, `{"router_id":"` + id1 + `","asn":65001,"address":"198.51.100.1","status":"established"}`, "status"},
		{BGPNetworkKind, `{"router_id":"` + id1 + `","network":"203.0.113.0/24"}`, ""},
		{BGPNetworkKind, `{"router_id":"` + id1 + `","network":"2001:db8:1::/48"}`, ""},
		{BGPNetworkKind, `{"router_id":"` + id1 + `"}`, "network"},
		{BGPNetworkKind, `{"router_id":"` + id1 + `","network":"224.0.0.0/4"}`, "network"},
		{BGPNetworkKind, `{"router_id":"` + id1 + `","network":"203.0.113.0/33"}`, "network"},
		{RouteKind, `{"router_id":"` + id1 + `","dst":"10.0.0.0/24","port_id":"` + id2 + `","learned":true}`, "learned"},
	}
	for _, c := range cases {
		_, err := decodeValidate(c.kind, c.body)
		var fe *FieldError
		switch {
		case c.field == "" && err != nil:
			t.Errorf("%s %s: unexpected error %v", c.kind.Name, c.body, err)
		case c.field != "" && !errors.As(err, &fe):
			t.Errorf("%s %s: want error on %q, got %v", c.kind.Name, c.body, c.field, err)
		case c.field != "" && fe.Field != c.field:
			t.Errorf("%s %s: error names %q, want %q (%v)", c.kind.Name, c.body, fe.Field, c.field, err)
		case err != nil && !strings.HasPrefix(err.Error(), c.field+": "):
			t.Errorf("%s %s: message %q does not start with the field", c.kind.Name, c.body, err)
		}
	}
}

func TestDefaultsAndNormalization(t *testing.T) {
	o, err := decodeValidate(RouteKind, `{"router_id":"`+id1+`","dst":"10.0.0.7/24","port_id":"`+id2+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	r := o.(*Route)
	if r.Dst != netip.MustParsePrefix("10.0.0.0/24") || r.Src != netip.MustParsePrefix("0.0.0.0/0") {
		t.Errorf("route not normalized: dst %s src %s", r.Dst, r.Src)
	}
	if r.Type != RouteNormal || r.Weight != 100 {
		t.Errorf("route defaults: type %q weight %d", r.Type, r.Weight)
	}
	o, _ = decodeValidate(RouteKind, `{"router_id":"`+id1+`","dst":"2001:db8::/32","port_id":"`+id2+`"}`)
	if o.(*Route).Src != netip.MustParsePrefix("::/0") {
		t.Errorf("IPv6 route src default %s", o.(*Route).Src)
	}
	o, _ = decodeValidate(BridgeKind, `{}`)
	if o.(*Bridge).State != StateUp {
		t.Errorf("bridge state default %q", o.(*Bridge).State)
	}
	o, _ = decodeValidate(DHCPSubnetKind, `{"bridge_id":"`+id1+`","subnet":"10.0.0.0/24","gateway":"10.0.0.1"}`)
	if o.(*DHCPSubnet).ServerAddress != netip.MustParseAddr("10.0.0.1") {
		t.Errorf("dhcp server address default %s", o.(*DHCPSubnet).ServerAddress)
	}
	o, err = decodeValidate(RuleKind, `{"chain_id":"`+id1+`","type":"accept","nd_target":"2001:db8::7/64"}`)
	if err != nil || o.(*Rule).NDTarget != netip.MustParsePrefix("2001:db8::/64") {
		t.Errorf("rule nd_target not normalized: %v %v", o, err)
	}
	o, _ = decodeValidate(RuleKind, `{"chain_id":"`+id1+`","type":"rev_snat"}`)
	if o.(*Rule).FlowAction != "accept" {
		t.Errorf("NAT rule flow action default %q", o.(*Rule).FlowAction)
	}
}

func TestBGPDefaults(t *testing.T) {
	o, err := decodeValidate(BGPPeerKind, `{"router_id":"`+id1+`","asn":65001,"address":"198.51.100.1"}`)
	if err != nil {
		t.Fatal(err)
	}
	p := o.(*BGPPeer)
	if p.KeepAlive != 1 || p.HoldTime != 3 || !p.BFDEnabled() || p.BFDInterval != 100 || p.BFDMultiplier != 3 || p.MaxPrefixes != 1000 {
		t.Errorf("defaults: %+v", p)
	}
	o, err = decodeValidate(BGPNetworkKind, `{"router_id":"`+id1+`","network":"203.0.113.77/24"}`)
	if err != nil {
		t.Fatal(err)
	}
	if got := o.(*BGPNetwork).Network.String(); got != "203.0.113.0/24" {
		t.Errorf("network not masked: %s", got)
	}
}

func TestLearnedRouteID(t *testing.T) {
	a := LearnedRouteID(id1, netip.MustParsePrefix("0.0.0.0/0"))
	if !IsUUID(a) {
		t.Fatalf("%q is not a UUID", a)
	}
	if a != LearnedRouteID(id1, netip.MustParsePrefix("0.0.0.0/0")) {
		t.Error("not deterministic")
	}
	if a == LearnedRouteID(id2, netip.MustParsePrefix("0.0.0.0/0")) || a == LearnedRouteID(id1, netip.MustParsePrefix("::/0")) {
		t.Error("different ports or prefixes share an id")
	}
	if LearnedRouteID(id1, netip.MustParsePrefix("10.1.2.3/8")) != LearnedRouteID(id1, netip.MustParsePrefix("10.0.0.0/8")) {
		t.Error("unmasked prefix changes the id")
	}
}

func TestValueTextRoundTrip(t *testing.T) {
	for _, s := range []string{"10.0.0.5", "10.0.0.5-10.0.0.9", "10.0.0.5:80", "10.0.0.5-10.0.0.9:1024-65535", "[2001:db8::1]:80", "2001:db8::1"} {
		v, err := ParseNATTarget(s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if v.String() != s {
			t.Errorf("NAT target %s printed as %s", s, v)
		}
	}
	for _, s := range []string{"", "x", "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.2-10.0.0.1", "[2001:db8::1", "10.0.0.1-2001:db8::1"} {
		if _, err := ParseNATTarget(s); err == nil {
			t.Errorf("NAT target %q accepted", s)
		}
	}
	for _, s := range []string{"02:00:00:00:00:05", "ff:ff:ff:ff:ff:ff"} {
		m, err := packet.ParseMAC(s)
		if err != nil || m.String() != s {
			t.Errorf("MAC %s: %v %s", s, err, m)
		}
	}
	for _, s := range []string{"02:00:00:00:00", "02:00:00:00:00:0g", "0200.0000.0005"} {
		if _, err := packet.ParseMAC(s); err == nil {
			t.Errorf("MAC %q accepted", s)
		}
	}
	if !RandomMAC().IsZero() && RandomMAC().IsMulticast() {
		t.Error("random MAC is multicast")
	}
	if r, _ := ParsePortRange("1000-2000"); !r.Contains(1500) || r.Contains(999) || r.String() != "1000-2000" {
		t.Errorf("port range %v", r)
	}
}

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		id1: true, "aaaaaaaa-1111-4111-8111-111111111111": true, "AAAAAAAA-1111-4111-8111-111111111111": false, id1[:35]: false, "11111111x1111-4111-8111-111111111111": false, "": false,
	} {
		if IsUUID(s) != want {
			t.Errorf("IsUUID(%q) != %v", s, want)
		}
	}
}

func TestErrorMessagesNameValueNotFunction(t *testing.T) {
	_, err := decodeValidate(RouteKind, `{"router_id":"`+id1+`","dst":"10.0.0.0/33","port_id":"`+id2+`"}`)
	if err == nil || err.Error() != `dst: "10.0.0.0/33" is not a CIDR prefix: prefix length out of range` {
		t.Errorf("prefix error: %v", err)
	}
	_, err = decodeValidate(PortKind, `{"router_id":"`+id1+`","address":"10.0.0.300","network":"10.0.0.0/24"}`)
	if err == nil || !strings.HasPrefix(err.Error(), `address: "10.0.0.300" is not an IP address`) {
		t.Errorf("address error: %v", err)
	}
}
