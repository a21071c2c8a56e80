package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/sim"
)

// The stateful services' session (issue 3/4: NAT on a router, security
// group chains, port and address groups, load balancers), verbatim, one
// nagare -e per line against a real server, then what it built read back.
var statefulSession = []struct{ line, want string }{
	// Static NAT and PAT on a router.
	{"create router name router0", "router0"},
	{"router router0 add port address 10.81.14.201 net 10.81.14.0/24", "router0:port0"},
	{"create chain name nat-in", "chain0"},
	{"chain chain0 add rule dst 10.81.14.201 proto 6 dst-port 80 type dnat action accept target 172.16.20.100:80", "chain0:rule0"},
	{"chain chain0 add rule dst 10.81.14.201 type rev_snat action accept", "chain0:rule1"},
	{"create chain name nat-out", "chain1"},
	{"chain chain1 add rule src 172.16.20.0/24 out-ports router0:port0 type snat action accept target 10.81.14.201", "chain1:rule0"},
	{"chain chain1 add rule src 172.16.20.0/24 type rev_dnat action accept", "chain1:rule1"},
	{"router router0 set infilter chain0", ""},
	{"router router0 set outfilter chain1", ""},
	{"chain chain0 list rule", "rule rule0 dst 10.81.14.201/32 proto 6 dst-port 80 pos 1 type dnat action accept target 172.16.20.100:80\n" +
		"rule rule1 dst 10.81.14.201/32 pos 2 type rev_snat action accept"},
	{"chain chain1 list rule", "rule rule0 out-ports router0:port0 src 172.16.20.0/24 pos 1 type snat action accept target 10.81.14.201\n" +
		"rule rule1 src 172.16.20.0/24 pos 2 type rev_dnat action accept"},
	{"chain chain1 add rule src 172.16.30.0/24 type snat action accept target 10.81.14.201-10.81.14.202:20000-29999", "chain1:rule2"},
	{"chain chain1 rule rule2 show target", "10.81.14.201-10.81.14.202:20000-29999"},

	// Security-group style chains over port groups and address groups.
	{"create bridge name tenant", "bridge0"},
	{"bridge bridge0 add port", "bridge0:port0"},
	{"bridge bridge0 add port", "bridge0:port1"},
	{"create port-group name web stateful true", "pgroup0"},
	{"port-group pgroup0 add member port bridge0:port1", "group pgroup0 port bridge0:port1"},
	{"port-group pgroup0 list member", "group pgroup0 port bridge0:port1"},
	{"list port-group", "port-group pgroup0 name web stateful true"},
	{"create ip-address-group name sg-web", "ipg0"},
	{"ip-address-group ipg0 add address address 172.16.20.100", "group ipg0 address 172.16.20.100"},
	{"ip-address-group ipg0 list address", "group ipg0 address 172.16.20.100"},
	{"create chain name sg-in", "chain2"},
	{"chain chain2 add rule flow return-flow type accept", "chain2:rule0"},
	{"chain chain2 add rule ct-state established type accept", "chain2:rule1"},
	{"chain chain2 add rule port-group pgroup0 proto 6 dst-port 22 type accept", "chain2:rule2"},
	{"chain chain2 add rule ip-address-group-src ipg0 proto 6 dst-port 80 type accept", "chain2:rule3"},
	{"chain chain2 add rule ct-state !established type reject", "chain2:rule4"},
	{"chain chain2 list rule", "rule rule0 flow return-flow pos 1 type accept\n" +
		"rule rule1 ct-state established pos 2 type accept\n" +
		"rule rule2 port-group pgroup0 proto 6 dst-port 22 pos 3 type accept\n" +
		"rule rule3 ip-address-group-src ipg0 proto 6 dst-port 80 pos 4 type accept\n" +
		"rule rule4 ct-state !established pos 5 type reject"},
	{"bridge bridge0 port port1 set infilter chain2", ""},

	// An L4 load balancer on the router.
	{"create health-monitor type http delay 1 timeout 1 max-retries 2 url-path /healthz", "hm0"},
	{"create load-balancer name lb", "lb0"},
	{"load-balancer lb0 add pool protocol tcp lb-method round_robin health-monitor hm0", "lb0:pool0"},
	{"load-balancer lb0 pool pool0 add member address 172.16.20.100 port 80 weight 2", "lb0:pool0:pm0"},
	{"pool lb0:pool0 add member address 172.16.20.101 port 80", "lb0:pool0:pm1"},
	{"load-balancer lb0 add vip address 10.81.14.202 port 80 pool lb0:pool0 persistence source_ip", "lb0:vip0"},
	{"router router0 set load-balancer lb0", ""},
	{"load-balancer lb0 list pool", "pool pool0 protocol tcp lb-method round_robin health-monitor hm0 state up"},
	{"pool lb0:pool0 list member", "member pm0 address 172.16.20.100 port 80 weight 2 state up\n" +
		"member pm1 address 172.16.20.101 port 80 weight 1 state up"},
	{"list vip", "vip lb0:vip0 pool lb0:pool0 address 10.81.14.202 port 80 persistence source_ip"},
	// "~": a regular expression, where other fields with defaults may come and go.
	{"list health-monitor", `~health-monitor hm0 type http delay 1 timeout 1 max-retries 2 (.* )?url-path /healthz (.* )?state up`},
	{"list router", "router router0 name router0 state up infilter chain0 outfilter chain1 load-balancer lb0"},

	// No agent published anything yet: the header only.
	{"router router0 list nat", "Pro  Inside global  Inside local  Outside local  Outside global  State  TTL  Host"},
	{"show ip nat translations", ""},
}

func TestStatefulServices(t *testing.T) {
	e := startServer(t)
	host := e.registerHost("hv0")

	t.Run("session", func(t *testing.T) {
		for _, s := range statefulSession {
			out, errOut, code := e.nagare("", "-e", s.line)
			if code != 0 || errOut != "" {
				t.Fatalf("%s: exit %d, stderr %q", s.line, code, errOut)
			}
			got := strings.TrimSuffix(out, "\n")
			if re, ok := strings.CutPrefix(s.want, "~"); ok {
				if !regexp.MustCompile("^" + re + "$").MatchString(got) {
					t.Errorf("%s:\n got %q\nwant /%s/", s.line, got, re)
				}
			} else if got != s.want {
				t.Errorf("%s:\n got %q\nwant %q", s.line, got, s.want)
			}
		}
	})

	t.Run("nat translations", func(t *testing.T) {
		var router string
		if err := json.Unmarshal([]byte(e.run(t, "-o", "json", "-e", "router router0 show id")), &router); err != nil {
			t.Fatal(err)
		}
		zone := fmt.Sprintf("%016x", sim.ObjectTag(model.RouterKind, router))
		cli := e.etcd()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		lease, err := cli.Grant(ctx, 300)
		if err != nil {
			t.Fatal(err)
		}
		exp := time.Now().Add(120 * time.Second)
		err = nsdb.New(cli).PutNATTranslations(ctx, host, lease.ID, &agentstatus.NATTranslations{HostID: host, Translations: []agentstatus.NATTranslation{
			{Zone: zone, Type: "snat", Protocol: "tcp", InsideGlobal: "10.81.14.201:1025", InsideLocal: "172.16.20.100:40000",
				OutsideLocal: "192.0.2.80:80", OutsideGlobal: "192.0.2.80:80", State: "established", Expires: exp},
			{Zone: zone, Type: "dnat", Protocol: "tcp", InsideGlobal: "10.81.14.201:80", InsideLocal: "172.16.20.100:80",
				OutsideLocal: "192.0.2.9:5555", OutsideGlobal: "192.0.2.9:5555", State: "new", Expires: exp},
			{Zone: "0000000000000001", Type: "snat", Protocol: "udp", InsideGlobal: "10.9.9.9:1024", InsideLocal: "10.0.0.5:53",
				OutsideLocal: "192.0.2.53:53", OutsideGlobal: "192.0.2.53:53", State: "new", Expires: exp},
		}})
		if err != nil {
			t.Fatal(err)
		}
		table := `^Pro  Inside global      Inside local         Outside local   Outside global  State        TTL  Host
tcp  10\.81\.14\.201:1025  172\.16\.20\.100:40000  192\.0\.2\.80:80   192\.0\.2\.80:80   established  1[12]\d  host0
tcp  10\.81\.14\.201:80    172\.16\.20\.100:80     192\.0\.2\.9:5555  192\.0\.2\.9:5555  new          1[12]\d  host0
$`
		for _, line := range []string{"router router0 list nat", "router router0 nat list", "show ip nat translations router router0"} {
			if got := e.run(t, "-e", line); !regexp.MustCompile(table).MatchString(got) {
				t.Errorf("%s:\n%s", line, got)
			}
		}
		if got := e.run(t, "-e", "show ip nat translations"); !regexp.MustCompile(`^router router0\n` + table[1:]).MatchString(got) {
			t.Errorf("show ip nat translations:\n%s", got)
		}
		var ans struct {
			RouterID     string                       `json:"router_id"`
			Translations []agentstatus.NATTranslation `json:"translations"`
		}
		if err := json.Unmarshal([]byte(e.run(t, "-o", "json", "-e", "router router0 show nat")), &ans); err != nil ||
			ans.RouterID != router || len(ans.Translations) != 2 || ans.Translations[0].HostID != host || ans.Translations[0].InsideLocal != "172.16.20.100:40000" {
			t.Errorf("-o json: %v %+v", err, ans)
		}
		if out, errOut, code := e.nagare("", "-e", "show ip nat translations router router5"); code != 1 || out != "" ||
			errOut != "User error: there is no router router5 (there is only router0)\n" {
			t.Errorf("unknown router: exit %d, stdout %q, stderr %q", code, out, errOut)
		}
	})
}
