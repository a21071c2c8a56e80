package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/shlex"
)

// dump renders a command compactly for comparison:
// "VERB path=STEP/STEP row=ROW a=[F=V …] f=[…] v=VIEW" where a step is "TYPE:ID",
// "TYPE{F=V}" or "TYPE", a value is its JSON, "@ref" or "@[typed path]",
// and "!" marks negation.
func dump(c *Command) string {
	if c == nil {
		return "<nil>"
	}
	var b strings.Builder
	b.WriteString(c.Verb.String())
	if len(c.Path) > 0 {
		b.WriteString(" path=" + dumpPath(c.Path))
	}
	if c.Row != nil {
		b.WriteString(" row=" + c.Row.Name)
	}
	if len(c.Assigns) > 0 {
		b.WriteString(" a=[" + dumpAssigns(c.Assigns) + "]")
	}
	if len(c.Fields) > 0 {
		b.WriteString(" f=[" + strings.Join(c.Fields, " ") + "]")
	}
	if c.View != nil {
		b.WriteString(" v=" + c.View.Word)
	}
	return b.String()
}

func dumpPath(steps []Step) string {
	var parts []string
	for _, s := range steps {
		switch {
		case s.ID != "":
			parts = append(parts, s.Row.Name+":"+s.ID)
		case s.Filter != nil:
			parts = append(parts, s.Row.Name+"{"+dumpAssigns(s.Filter)+"}")
		default:
			parts = append(parts, s.Row.Name)
		}
	}
	return strings.Join(parts, "/")
}

func dumpAssigns(as []Assign) string {
	var parts []string
	for _, a := range as {
		v := string(a.JSON)
		if a.Refs != nil {
			var refs []string
			for _, r := range a.Refs {
				if r.Path != nil {
					refs = append(refs, "@["+dumpPath(r.Path)+"]")
				} else {
					refs = append(refs, "@"+r.Word)
				}
			}
			v = strings.Join(refs, ",")
		}
		if a.Neg {
			v = "!" + v
		}
		parts = append(parts, a.Word+"="+v)
	}
	return strings.Join(parts, " ")
}

func TestParse(t *testing.T) {
	checkParses(t, []parseCase{
		// The brief's session.
		{"create tunnel-zone name vxlan-tz type vxlan", `create row=tunnel-zone a=[name="vxlan-tz" type="vxlan"]`},
		{"list tunnel-zone", "list row=tunnel-zone"},
		{"create bridge name internal", `create row=bridge a=[name="internal"]`},
		{"bridge bridge0 add port", "create path=bridge:bridge0 row=port"},
		{"create router name MidoNet Provider Router", `create row=router a=[name="MidoNet Provider Router"]`},
		{"router router0 add port address 10.0.0.1 net 10.0.0.0/24", `create path=router:router0 row=port a=[address="10.0.0.1" net="10.0.0.0/24"]`},
		{"bridge bridge0 port port0 set peer router0:port0", "set path=bridge:bridge0/port:port0 a=[peer=@router0:port0]"},
		{"router router0 add route src 0.0.0.0/0 dst 10.0.0.0/24 type normal port router0:port0",
			`create path=router:router0 row=route a=[src="0.0.0.0/0" dst="10.0.0.0/24" type="normal" port=@router0:port0]`},
		{"bridge bridge0 add dhcp subnet 10.0.0.0/24 gw 10.0.0.1", `create path=bridge:bridge0 row=dhcp-subnet a=[subnet="10.0.0.0/24" gw="10.0.0.1"]`},
		{"list router", "list row=router"},
		{"list host", "list row=host"},
		{"tunnel-zone tzone0 add member host host0 address 192.168.100.201",
			`create path=tunnel-zone:tzone0 row=tunnel-zone-member a=[host=@host0 address="192.168.100.201"]`},
		{"host host0 add binding interface leftdp port bridge0:port0", `create path=host:host0 row=binding a=[interface="leftdp" port=@bridge0:port0]`},
		{"chain chain0 add rule dst 10.81.14.201 proto 6 dst-port 80 type dnat action accept target 172.16.20.100:80",
			`create path=chain:chain0 row=rule a=[dst="10.81.14.201/32" proto=6 dst-port="80" type="dnat" action="accept" target=["172.16.20.100:80"]]`},
		{"router router0 set infilter chain0", "set path=router:router0 a=[infilter=@chain0]"},

		// NAT translations (Cisco's words too) and the stateful services' objects.
		{"router router0 list nat", "list path=router:router0 v=nat"},
		{"router router0 nat show", "show path=router:router0 v=nat"},
		{"show ip nat translations", "show v=nat"},
		{"describe rule", "describe row=rule"},
		{"describe vip", "describe row=vip"},
		{"show ip nat translations router router0", "show path=router:router0 v=nat"},
		{"chain chain1 add rule src 172.16.20.0/24 out-ports router0:port0 type snat action accept target 10.81.14.201",
			`create path=chain:chain1 row=rule a=[src="172.16.20.0/24" out-ports=@router0:port0 type="snat" action="accept" target=["10.81.14.201"]]`},
		{"chain chain2 add rule ct-state !established type reject", `create path=chain:chain2 row=rule a=[ct-state=!"established" type="reject"]`},
		{"chain chain0 add rule ethertype 2054 arp-sha 02:00:00:00:00:01 src 10.0.0.5 type accept",
			`create path=chain:chain0 row=rule a=[ethertype=2054 arp-sha="02:00:00:00:00:01" src="10.0.0.5/32" type="accept"]`},
		{"chain chain0 add rule ethertype 2054 arp-sha !02:00:00:00:00:01 type drop",
			`create path=chain:chain0 row=rule a=[ethertype=2054 arp-sha=!"02:00:00:00:00:01" type="drop"]`},
		{"chain chain0 add rule ethertype 34525 proto 58 src-port 136 src-mac 02:00:00:00:00:01 nd-target fe80::1 type accept",
			`create path=chain:chain0 row=rule a=[ethertype=34525 proto=58 src-port="136" src-mac="02:00:00:00:00:01" nd-target="fe80::1/128" type="accept"]`},
		{"pool lb0:pool0 add member address 172.16.20.100 port 80 weight 2",
			`create path=pool:lb0:pool0 row=pool-member a=[address="172.16.20.100" port=80 weight=2]`},

		// midonet.md §12's other examples.
		{"create bridge name 'tenant net'", `create row=bridge a=[name="tenant net"]`},
		{"router router0 list route", "list path=router:router0 row=route"},
		{"router router0 route list", "list path=router:router0 row=route"},
		{"list router name edge", `list row=router a=[name="edge"]`},
		{"show router router0", "show path=router:router0"},
		{"router router1 show id", "show path=router:router1 f=[id]"},
		{"router router0 name show", "show path=router:router0 f=[name]"},
		{"host host1 binding add interface eth1 port bridge0:port3", `create path=host:host1 row=binding a=[interface="eth1" port=@bridge0:port3]`},
		{"router router0 set state down", `set path=router:router0 a=[state="down"]`},
		{"router router0 clear infilter", "clear path=router:router0 f=[infilter]"},
		{"clear router router0 infilter outfilter", "clear path=router:router0 f=[infilter outfilter]"},
		{"bridge bridge0 port port0 clear peer", "clear path=bridge:bridge0/port:port0 f=[peer]"},
		{"delete tunnel-zone tzone0", "delete path=tunnel-zone:tzone0"},
		{"host host3 revoke", "revoke path=host:host3"},
		{"router router2 delete route route2", "delete path=router:router2/route:route2"},
		{"port-group pgroup0 delete member port router0:port0", "delete path=port-group:pgroup0/port-group-member{port=@router0:port0}"},
		{"describe router router0", "describe path=router:router0 row=router"},
		{"describe", "describe"},
		{"desc bridge", "describe row=bridge"},
		{"describe host binding", "describe path=host row=binding"},
		{"describe bridge dhcp host", "describe path=bridge/dhcp-subnet row=dhcp-host"},
		{"router router0 describe port", "describe path=router:router0 row=port"},
		{"bridge bridge0 dhcp subnet 10.0.0.0/24 add host name vm1 mac 02:00:00:00:00:05 address 10.0.0.5",
			`create path=bridge:bridge0/dhcp-subnet{subnet="10.0.0.0/24"} row=dhcp-host a=[name="vm1" mac="02:00:00:00:00:05" address="10.0.0.5"]`},
		{"chain chain0 add rule dst 203.0.113.10 type dnat action accept target 10.0.0.5 pos 1",
			`create path=chain:chain0 row=rule a=[dst="203.0.113.10/32" type="dnat" action="accept" target=["10.0.0.5"] pos=1]`},
		{"router router0 set infilter chain chain0", "set path=router:router0 a=[infilter=@[chain:chain0]]"},
		{"router router0 add route dst 10.0.0.0/8 port router router0 port port1 weight 5",
			`create path=router:router0 row=route a=[dst="10.0.0.0/8" port=@[router:router0/port:port1] weight=5]`},

		// Abbreviations and verb positions.
		{"l bridge", "list row=bridge"},
		{"li bridge bridge0 port", "list path=bridge:bridge0 row=port"},
		{"s router router0", "show path=router:router0"},
		{"router router0 sh", "show path=router:router0"},
		{"router router0 list", "show path=router:router0"},
		{"list router router0", "show path=router:router0"},
		{"del router router0", "delete path=router:router0"},
		{"router router0 del", "delete path=router:router0"},
		{"create router router0 port", "create path=router:router0 row=port"},
		{"create bridge bridge0 dhcp subnet 10.0.0.0/24", `create path=bridge:bridge0 row=dhcp-subnet a=[subnet="10.0.0.0/24"]`},
		{"list port", "list row=port"},
		{"show port bridge0:port0", "show path=port:bridge0:port0"},
		{"router 4f1e1c52-6b3a-4a4e-9b55-1c3f6f0d2a11 show", "show path=router:4f1e1c52-6b3a-4a4e-9b55-1c3f6f0d2a11"},

		// Values: negation, lists, multi-word strings, value words that look like fields.
		{"chain chain0 add rule src !10.0.0.0/16 type drop", `create path=chain:chain0 row=rule a=[src=!"10.0.0.0/16" type="drop"]`},
		{"chain chain0 add rule proto ! 17 type drop", `create path=chain:chain0 row=rule a=[proto=!17 type="drop"]`},
		{"chain chain0 add rule in-ports !router0:port0,router0:port1 type accept",
			`create path=chain:chain0 row=rule a=[in-ports=!@router0:port0,@router0:port1 type="accept"]`},
		{"chain chain0 add rule dst fd00::1 type accept", `create path=chain:chain0 row=rule a=[dst="fd00::1/128" type="accept"]`},
		{"bridge bridge0 add dhcp subnet 10.0.0.0/24 dns-servers 10.0.0.2,10.0.0.3",
			`create path=bridge:bridge0 row=dhcp-subnet a=[subnet="10.0.0.0/24" dns-servers=["10.0.0.2","10.0.0.3"]]`},
		{"create bridge name state state down", `create row=bridge a=[name="state" state="down"]`},
		{"list router name MidoNet Provider Router state up", `list row=router a=[name="MidoNet Provider Router" state="up"]`},
		{"create port device bridge0", "create row=port a=[device=@bridge0]"},
		{"bridge bridge0 dhcp subnet 10.0.0.0/24 set gw 10.0.0.254", `set path=bridge:bridge0/dhcp-subnet{subnet="10.0.0.0/24"} a=[gw="10.0.0.254"]`},
		{"set bridge bridge0 dhcp subnet 10.0.0.0/24 gw 10.0.0.254", `set path=bridge:bridge0/dhcp-subnet{subnet="10.0.0.0/24"} a=[gw="10.0.0.254"]`},
		{"list bridge bridge0 dhcp subnet 10.0.0.0/24 host", `list path=bridge:bridge0/dhcp-subnet{subnet="10.0.0.0/24"} row=dhcp-host`},
		{"tunnel-zone tzone0 member host host host0 delete", "delete path=tunnel-zone:tzone0/tunnel-zone-member{host=@[host:host0]}"},
		{"host host0 delete binding interface tap0", `delete path=host:host0/binding{interface="tap0"}`},
		{"", "<nil>"},
	})
}

type parseCase struct{ line, want string }

// checkParses parses each line and compares the command's dump.
func checkParses(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		words, err := shlex.Split(tc.line)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(words)
		if err != nil {
			t.Errorf("%s: %v", tc.line, err)
			continue
		}
		if got := dump(c); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.line, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		line string
		at   string // the words the error points at; "" means incomplete
	}{
		{"lst bridge", "lst bridge"},
		{"list brdge", "brdge"},
		{"bridge", ""},
		{"bridge bridge0", ""},
		{"bridge bridge0 frobnicate", "frobnicate"},
		{"bridge bridge0 add", ""},
		{"show ip", ""},
		{"describe member", "member"},
		{"show ip nat translations bridge bridge0", "bridge bridge0"},
		{"show ip nat translations router router0 extra", "extra"},
		{"show ip route", "route"},
		{"bridge bridge0 add route", "route"},
		{"create bridge name", ""},
		{"create bridge nme x", "nme x"},
		{"create bridge state up colour blue", "colour blue"},
		{"create bridge state sideways", "sideways"},
		{"router router0 set", ""},
		{"router router0 set weight 3", "weight 3"},
		{"router router0 add route dst 10.0.0.0/8 weight 70000", "70000"},
		{"router router0 add route dst 10.0.0.0/8 weight 7 extra", "extra"},
		{"router router0 add route dst 300.0.0.0/8", "300.0.0.0/8"},
		{"chain chain0 add rule tos !3", "!3"},
		{"chain chain0 add rule src-mac 02:00:00:00:00 type drop", "02:00:00:00:00 type drop"},
		{"router router0 set infilter chain0,chain1", "chain0,chain1"},
		{"router router0 set infilter chain", ""},
		{"router router0 port port0 show colour", "colour"},
		{"router router0 clear colour", "colour"},
		{"router router0 delete frob", "frob"},
		{"router router0 show name extra", "extra"},
		{"router router0 route show", "show"},
		{"create", ""},
		{"list", ""},
		{"list router router0 extra", "extra"},
		{"describe router router0 port port0 extra", "extra"},
		{"bridge bridge0 dhcp 10.0.0.0/24", "10.0.0.0/24"},
		{"router router0 set infilter chain chain0 extra", "extra"},
	} {
		words, _ := shlex.Split(tc.line)
		_, err := Parse(words)
		var se *SyntaxError
		switch {
		case tc.at == "":
			if !errors.Is(err, ErrIncomplete) {
				t.Errorf("%s: got %v, want Missing arguments", tc.line, err)
			}
		case !errors.As(err, &se):
			t.Errorf("%s: got %v, want a syntax error at %q", tc.line, err, tc.at)
		case strings.Join(se.Words[se.At:], " ") != tc.at:
			t.Errorf("%s: error at %q, want %q (%v)", tc.line, strings.Join(se.Words[se.At:], " "), tc.at, err)
		case !strings.HasPrefix(err.Error(), "Syntax error at: "+tc.at):
			t.Errorf("%s: message %q", tc.line, err)
		}
	}
}

func TestReadOnlyIsUserError(t *testing.T) {
	_, err := Parse(strings.Fields("host host0 set alive true"))
	var ue *UserError
	if !errors.As(err, &ue) || err.Error() != "User error: alive is read-only: the server sets it" {
		t.Fatalf("got %v", err)
	}
}

// Every child word, field word and verb must be distinguishable where the
// parser meets them, or the grammar would be ambiguous.
func TestTableIsUnambiguous(t *testing.T) {
	for _, r := range table {
		for _, c := range r.children {
			if r.fieldsFor(c.Word) != nil {
				t.Errorf("%s: child word %q is also a field word", r.Name, c.Word)
			}
			if verbOf(c.Word) != 0 {
				t.Errorf("%s: child word %q is a verb", r.Name, c.Word)
			}
		}
		for w := range r.byWord {
			if verbOf(w) != 0 {
				t.Errorf("%s: field word %q is a verb", r.Name, w)
			}
		}
		if r.Prefix == "" && len(r.fields) == 0 {
			t.Errorf("%s: id-less with no field to name its objects", r.Name)
		}
		if !r.TopLevel && len(r.parents()) == 0 {
			t.Errorf("%s: unreachable: not top-level and no parent lists it", r.Name)
		}
	}
}
