package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
)

// id makes readable fixed UUIDs: id(0xb0) = "000000b0-0000-4000-8000-000000000000".
func id(n int) string { return fmt.Sprintf("%08x-0000-4000-8000-000000000000", n) }

// fixture is a session whose collections are already "fetched", so alias
// computation and rendering run with no server at all.
func fixture(t *testing.T) *session {
	t.Helper()
	s := newSession(context.Background(), nil)
	put := func(r *Row, objs ...string) []*object {
		var out []*object
		for _, js := range objs {
			it, err := decodeItem(json.RawMessage(js))
			if err != nil {
				t.Fatalf("%s: %v", js, err)
			}
			out = append(out, &object{row: r, raw: it.fields, json: it.bytes})
		}
		return out
	}
	q := func(n int) string { return `"` + id(n) + `"` }
	s.flat[rowsByName["router"]] = put(rowsByName["router"],
		`{"id":`+q(0xa0)+`,"name":"MidoNet Provider Router","state":"up","inbound_filter_id":`+q(0xc0)+`}`,
		`{"id":`+q(0xa1)+`,"name":"edge","state":"down"}`)
	s.flat[rowsByName["bridge"]] = put(rowsByName["bridge"], `{"id":`+q(0xb0)+`,"name":"internal","state":"up"}`)
	// Ports in creation order, interleaving devices: aliases count per device.
	s.flat[rowsByName["port"]] = put(rowsByName["port"],
		`{"id":`+q(0x10)+`,"bridge_id":`+q(0xb0)+`,"state":"up","tunnel_key":77}`,
		`{"id":`+q(0x11)+`,"router_id":`+q(0xa0)+`,"state":"up","mac":"02:0a:00:00:00:01","address":"10.0.0.1","network":"10.0.0.0/24","peer_id":`+q(0x12)+`,"tunnel_key":78}`,
		`{"id":`+q(0x12)+`,"bridge_id":`+q(0xb0)+`,"state":"up","peer_id":`+q(0x11)+`}`,
		`{"id":`+q(0x13)+`,"router_id":`+q(0xa1)+`,"state":"down","host_id":`+q(0xd0)+`,"interface_name":"eth1"}`)
	s.flat[rowsByName["chain"]] = put(rowsByName["chain"], `{"id":`+q(0xc0)+`,"name":"in","rule_ids":[`+q(0xe0)+`]}`)
	s.flat[rowsByName["rule"]] = put(rowsByName["rule"],
		`{"id":`+q(0xe0)+`,"chain_id":`+q(0xc0)+`,"src":"10.0.0.0/16","inv_src":true,"in_port_ids":[`+q(0x11)+`,`+q(0x13)+`],"proto":6,"position":1,"type":"drop"}`)
	s.flat[rowsByName["host"]] = put(rowsByName["host"],
		`{"id":`+q(0xd0)+`,"name":"carlsberg","alive":true}`,
		`{"id":`+q(0xd1)+`,"name":"tuborg","addresses":["192.0.2.1","2001:db8::1"],"alive":false}`)
	s.flat[rowsByName["tunnel-zone"]] = put(rowsByName["tunnel-zone"], `{"id":`+q(0xf0)+`,"name":"vxlan-tz","type":"vxlan"}`)
	s.flat[rowsByName["tunnel-zone-member"]] = put(rowsByName["tunnel-zone-member"],
		`{"id":`+q(0xf1)+`,"tunnel_zone_id":`+q(0xf0)+`,"host_id":`+q(0xd0)+`,"address":"192.168.100.201"}`)
	s.nested["/hosts/"+id(0xd0)+"/bindings"] = put(rowsByName["binding"],
		`{"host_id":`+q(0xd0)+`,"interface_name":"eth1","port_id":`+q(0x13)+`}`)
	return s
}

func TestAliasesFromOrderedLists(t *testing.T) {
	s := fixture(t)
	for _, tc := range []struct {
		row        string
		id         int
		alias      string
		shortAlias string
	}{
		{"router", 0xa0, "router0", "router0"},
		{"router", 0xa1, "router1", "router1"},
		{"port", 0x10, "bridge0:port0", "port0"},
		{"port", 0x11, "router0:port0", "port0"},
		{"port", 0x12, "bridge0:port1", "port1"},
		{"port", 0x13, "router1:port0", "port0"},
		{"rule", 0xe0, "chain0:rule0", "rule0"},
		{"tunnel-zone", 0xf0, "tzone0", "tzone0"},
	} {
		o, err := s.byID(rowsByName[tc.row], id(tc.id))
		if err != nil || o == nil {
			t.Fatalf("%s %x: %v", tc.row, tc.id, err)
		}
		a, err := s.alias(o)
		if err != nil || a != tc.alias {
			t.Errorf("alias of %s %x = %q, %v; want %q", tc.row, tc.id, a, err, tc.alias)
		}
		sa, err := s.shortAlias(o)
		if err != nil || sa != tc.shortAlias {
			t.Errorf("short alias of %s %x = %q, %v; want %q", tc.row, tc.id, sa, err, tc.shortAlias)
		}
		// And back: every alias resolves to the object.
		back, err := s.resolveID(rowsByName[tc.row], nil, tc.alias)
		if err != nil || back.id() != id(tc.id) {
			t.Errorf("resolve %s = %v, %v", tc.alias, back, err)
		}
	}
	if _, err := s.resolveID(rowsByName["port"], nil, "port0"); err == nil ||
		err.Error() != "User error: port0 needs its router or bridge: write router0:port0 or bridge0:port0" {
		t.Errorf("bare child alias at top level: %v", err)
	}
	if _, err := s.resolveComposed("router0:port3"); err == nil ||
		err.Error() != "User error: there is no port port3 of router0 (there is only port0)" {
		t.Errorf("missing child: %v", err)
	}
	if _, err := s.resolveComposed("router0:rule0"); err == nil {
		t.Error("router0:rule0 resolved")
	}
}

func TestSplitAlias(t *testing.T) {
	for _, tc := range []struct {
		in     string
		prefix string
		n      int
		ok     bool
	}{
		{"port12", "port", 12, true}, {"tzone0", "tzone", 0, true}, {"pm3", "pm", 3, true},
		{"port", "", 0, false}, {"12", "", 0, false}, {"port01", "", 0, false}, {"", "", 0, false},
	} {
		p, n, ok := splitAlias(tc.in)
		if p != tc.prefix || n != tc.n || ok != tc.ok {
			t.Errorf("splitAlias(%q) = %q %d %v", tc.in, p, n, ok)
		}
	}
}

func TestLines(t *testing.T) {
	s := fixture(t)
	for _, tc := range []struct {
		row   string
		id    int
		short bool
		want  string
	}{
		{"router", 0xa0, false, "router router0 name MidoNet Provider Router state up infilter chain0"},
		{"router", 0xa1, false, "router router1 name edge state down"},
		{"bridge", 0xb0, false, "bridge bridge0 name internal state up"},
		// The brief's router port line; the tunnel key is hidden.
		{"port", 0x11, true, "port port0 device router0 state up plugged no mac 02:0a:00:00:00:01 address 10.0.0.1 net 10.0.0.0/24 peer bridge0:port1"},
		{"port", 0x11, false, "port router0:port0 device router0 state up plugged no mac 02:0a:00:00:00:01 address 10.0.0.1 net 10.0.0.0/24 peer bridge0:port1"},
		{"port", 0x10, true, "port port0 device bridge0 state up plugged no"},
		{"port", 0x13, true, "port port0 device router1 state down plugged yes host host0 interface eth1"},
		{"rule", 0xe0, true, "rule rule0 in-ports router0:port0,router1:port0 src !10.0.0.0/16 proto 6 pos 1 type drop"},
		{"host", 0xd0, false, "host host0 name carlsberg alive true"},
		{"host", 0xd1, false, "host host1 name tuborg alive false addresses 192.0.2.1,2001:db8::1"},
		{"tunnel-zone", 0xf0, false, "tzone tzone0 name vxlan-tz type vxlan"},
		// Id-less: no alias, and the owner is shown.
		{"tunnel-zone-member", 0xf1, false, "zone tzone0 host host0 address 192.168.100.201"},
	} {
		o, _ := s.byID(rowsByName[tc.row], id(tc.id))
		got, err := s.line(o, tc.short)
		if err != nil || got != tc.want {
			t.Errorf("%s %x:\n got %q %v\nwant %q", tc.row, tc.id, got, err, tc.want)
		}
	}
	host, _ := s.byID(rowsByName["host"], id(0xd0))
	b, err := s.children(rowsByName["binding"], host)
	if err != nil || len(b) != 1 {
		t.Fatalf("bindings: %v %v", b, err)
	}
	if got, _ := s.line(b[0], true); got != "host host0 interface eth1 port router1:port0" {
		t.Errorf("binding line %q", got)
	}
}

// A reference to an object that no longer exists prints its UUID rather
// than failing the listing.
func TestDanglingReferencePrintsUUID(t *testing.T) {
	s := fixture(t)
	it, _ := decodeItem(json.RawMessage(`{"id":"` + id(0x99) + `","router_id":"` + id(0xa1) + `","state":"up","peer_id":"` + id(0x77) + `"}`))
	s.flat[rowsByName["port"]] = append(s.flat[rowsByName["port"]], &object{row: rowsByName["port"], raw: it.fields})
	o, _ := s.byID(rowsByName["port"], id(0x99))
	if got, _ := s.line(o, true); got != "port port1 device router1 state up plugged no peer "+id(0x77) {
		t.Errorf("got %q", got)
	}
}
