package neutron_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/nagare/nagare/pkg/model"
)

// TestTranslationTrace runs the simulation (the native API's trace, what
// agents run on a packet's first miss) over a topology built entirely
// through the Neutron API, and checks that the translation means what
// Neutron means: security groups admit and refuse, the router routes
// between its interfaces, the gateway SNATs, a floating IP DNATs.
func TestTranslationTrace(t *testing.T) {
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
	if _, err := e.srv.Store().Create(e.ctx, &model.Host{Name: "compute-1"}); err != nil {
		t.Fatal(err)
	}
	ext := mk("/v2.0/networks", `{"network": {"name": "ext", "router:external": true, "provider:network_type": "flat", "provider:physical_network": "physnet1"}}`, "network")
	mk("/v2.0/subnets", `{"subnet": {"network_id": "`+id(ext)+`", "ip_version": 4, "cidr": "203.0.113.0/24", "enable_dhcp": false}}`, "subnet")
	net1 := mk("/v2.0/networks", `{"network": {"name": "n1"}}`, "network")
	sub1 := mk("/v2.0/subnets", `{"subnet": {"network_id": "`+id(net1)+`", "ip_version": 4, "cidr": "10.0.1.0/24"}}`, "subnet")
	net2 := mk("/v2.0/networks", `{"network": {"name": "n2"}}`, "network")
	sub2 := mk("/v2.0/subnets", `{"subnet": {"network_id": "`+id(net2)+`", "ip_version": 4, "cidr": "10.0.2.0/24"}}`, "subnet")
	r := mk("/v2.0/routers", `{"router": {"name": "r", "external_gateway_info": {"network_id": "`+id(ext)+`"}}}`, "router")
	for _, s := range []string{id(sub1), id(sub2)} {
		if st, doc := e.raw(c, "PUT", "/v2.0/routers/"+id(r)+"/add_router_interface", `{"subnet_id": "`+s+`"}`); st != 200 {
			t.Fatalf("add interface: %d %v", st, doc)
		}
	}
	web := mk("/v2.0/security-groups", `{"security_group": {"name": "web"}}`, "security_group")
	mk("/v2.0/security-group-rules", `{"security_group_rule": {"security_group_id": "`+id(web)+`", "direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80}}`, "security_group_rule")
	vm1 := mk("/v2.0/ports", `{"port": {"network_id": "`+id(net1)+`", "fixed_ips": [{"ip_address": "10.0.1.10"}], "binding:host_id": "compute-1"}}`, "port")
	vm2 := mk("/v2.0/ports", `{"port": {"network_id": "`+id(net2)+`", "fixed_ips": [{"ip_address": "10.0.2.20"}], "binding:host_id": "compute-1", "security_groups": ["`+id(web)+`"]}}`, "port")
	mk("/v2.0/floatingips", `{"floatingip": {"floating_network_id": "`+id(ext)+`", "port_id": "`+id(vm2)+`", "floating_ip_address": "203.0.113.50"}}`, "floatingip")

	trace := func(req string) (string, string) {
		t.Helper()
		st, doc := e.raw(c, "POST", "/api/v1/trace", req)
		if st != 200 {
			t.Fatalf("trace %s: %d %v", req, st, doc)
		}
		b, _ := json.MarshalIndent(doc["steps"], "", " ")
		return fmt.Sprint(doc["verdict"], " ", doc["reason"]), string(b) + fmt.Sprint(doc["actions"])
	}
	// vm1 → vm2:80 through the router: vm2's group admits TCP 80.
	v, steps := trace(`{"in_port_id": "` + id(vm1) + `", "src": "10.0.1.10", "dst": "10.0.2.20", "proto": "tcp", "src_port": 40000, "dst_port": 80}`)
	if !strings.HasPrefix(v, "forward") && !strings.HasPrefix(v, "output") {
		t.Errorf("vm1 → vm2:80: %s\n%s", v, steps)
	}
	// vm1 → vm2:22: refused by vm2's groups.
	if v, steps := trace(`{"in_port_id": "` + id(vm1) + `", "src": "10.0.1.10", "dst": "10.0.2.20", "proto": "tcp", "src_port": 40000, "dst_port": 22}`); !strings.HasPrefix(v, "drop") {
		t.Errorf("vm1 → vm2:22 should be dropped by the security group: %s\n%s", v, steps)
	}
	// vm1 spoofing another source: dropped by anti-spoofing.
	if v, steps := trace(`{"in_port_id": "` + id(vm1) + `", "src": "10.0.1.99", "dst": "10.0.2.20", "proto": "tcp", "src_port": 40000, "dst_port": 80}`); !strings.HasPrefix(v, "drop") {
		t.Errorf("spoofed source should be dropped: %s\n%s", v, steps)
	}
	// vm1 → outside: the router's post-routing chain SNATs to the
	// gateway's address. (The trace has no flow state, so it reports the
	// SNAT rule matched but not applied; agents apply it with their NAT
	// tables. The ARP request then floods the external network to its
	// uplink port, which an agent binds per host.)
	v, steps = trace(`{"in_port_id": "` + id(vm1) + `", "src": "10.0.1.10", "dst": "203.0.113.1", "proto": "tcp", "src_port": 40000, "dst_port": 443}`)
	if !strings.Contains(steps, `"kind": "nat"`) || !strings.Contains(steps, "post-routing") || v != "need-arp <nil>" {
		t.Errorf("vm1 → outside does not reach the gateway SNAT: %s\n%s", v, steps)
	}
	// Outside → the floating IP: the pre-routing DNAT rule matches it.
	_, doc := e.raw(c, "GET", "/v2.0/ports?device_owner=network:router_gateway", "")
	gwMAC := doc["ports"].([]any)[0].(map[string]any)["mac_address"].(string)
	uplink := ""
	st, list := e.rawList(c, "/api/v1/bridges/"+id(ext)+"/ports")
	for _, p := range list {
		if p["peer_id"] == nil {
			uplink = p["id"].(string)
		}
	}
	if st != 200 || uplink == "" {
		t.Fatalf("the external network's uplink port: %d %v", st, list)
	}
	v, steps = trace(`{"in_port_id": "` + uplink + `", "eth_dst": "` + gwMAC + `", "src": "198.51.100.7", "dst": "203.0.113.50", "proto": "tcp", "src_port": 40000, "dst_port": 80}`)
	if !strings.Contains(steps, "pre-routing") || !strings.Contains(steps, "203.0.113.50/32") {
		t.Errorf("outside → floating IP does not reach its DNAT rule: %s\n%s", v, steps)
	}
}
