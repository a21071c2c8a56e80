package neutron_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestOpenStackCLI drives Debian's openstack CLI (python3-openstackclient,
// installed by scripts/setup.sh) through a whole scenario with password
// authentication against the built-in identity service: identity
// administration, then network, subnet, router, interfaces, gateway,
// ports (one SR-IOV switchdev), floating IP, security group and rule,
// list/show/delete of each, a second project that sees none of it, and
// the extensions through python3-neutronclient's plugin (trunk, QoS
// policy and rule, RBAC, address group, subnet pool, firewall group).
func TestOpenStackCLI(t *testing.T) {
	if _, err := exec.LookPath("openstack"); err != nil {
		t.Skip("openstack (python3-openstackclient) is not installed; scripts/setup.sh installs it")
	}
	if testing.Short() {
		t.Skip("starts the openstack CLI ~40 times")
	}
	e := newEnv(t)
	home := t.TempDir()
	osc := func(user, password, project string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command("openstack", args...)
		cmd.Env = append(os.Environ(), "HOME="+home,
			"OS_AUTH_URL="+e.base+"/identity/v3", "OS_IDENTITY_API_VERSION=3", "OS_AUTH_TYPE=password",
			"OS_USERNAME="+user, "OS_PASSWORD="+password, "OS_PROJECT_NAME="+project,
			"OS_USER_DOMAIN_NAME=Default", "OS_PROJECT_DOMAIN_NAME=Default", "OS_INTERFACE=public")
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	admin := func(args ...string) string {
		t.Helper()
		out, err := osc("admin", adminPassword, "admin", args...)
		if err != nil {
			t.Fatalf("openstack %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	field := func(js, name string) string {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(js), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, js)
		}
		s, _ := m[name].(string)
		return s
	}

	// Identity administration through the CLI.
	admin("project", "create", "demo")
	admin("user", "create", "--project", "demo", "--password", "demo-pw", "demo-user")
	admin("role", "add", "--project", "demo", "--user", "demo-user", "member")
	if out := admin("role", "assignment", "list", "--user", "demo-user", "--project", "demo", "--names", "-f", "json"); !strings.Contains(out, "member") {
		t.Errorf("role assignment list: %s", out)
	}

	net := field(admin("network", "create", "net1", "-f", "json"), "id")
	sub := field(admin("subnet", "create", "--network", "net1", "--subnet-range", "10.0.0.0/24", "--dns-nameserver", "192.0.2.53", "sub1", "-f", "json"), "id")
	admin("network", "create", "--external", "--provider-network-type", "flat", "--provider-physical-network", "physnet1", "ext")
	admin("subnet", "create", "--network", "ext", "--subnet-range", "203.0.113.0/24", "--no-dhcp", "ext-sub")
	admin("router", "create", "r1")
	admin("router", "add", "subnet", "r1", "sub1")
	admin("router", "set", "--external-gateway", "ext", "r1")
	r := admin("router", "show", "r1", "-f", "json")
	if !strings.Contains(r, `"enable_snat": true`) || !strings.Contains(r, "203.0.113.") || !strings.Contains(r, "10.0.0.1") {
		t.Errorf("router show: %s", r)
	}
	p1 := field(admin("port", "create", "--network", "net1", "--fixed-ip", "subnet=sub1,ip-address=10.0.0.50", "p1", "-f", "json"), "id")
	p2 := admin("port", "create", "--network", "net1", "--vnic-type", "direct", "--binding-profile", `{"capabilities": ["switchdev"]}`, "p2", "-f", "json")
	if field(p2, "binding_vnic_type") != "direct" || !strings.Contains(p2, "switchdev") {
		t.Errorf("SR-IOV port: %s", p2)
	}
	fip := admin("floating", "ip", "create", "ext", "-f", "json")
	fipID := field(fip, "id")
	admin("floating", "ip", "set", "--port", "p1", fipID)
	if got := admin("floating", "ip", "show", fipID, "-f", "json"); field(got, "fixed_ip_address") != "10.0.0.50" || field(got, "port_id") != p1 {
		t.Errorf("floating ip show after set: %s", got)
	}
	admin("security", "group", "create", "sg1")
	rule := field(admin("security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "22", "sg1", "-f", "json"), "id")
	admin("port", "set", "--security-group", "sg1", "p1")

	for _, args := range [][]string{{"network", "list"}, {"subnet", "list"}, {"port", "list"}, {"router", "list"}, {"floating", "ip", "list"},
		{"security", "group", "list"}, {"security", "group", "rule", "list", "sg1"}, {"network", "show", "net1"}, {"subnet", "show", sub}, {"port", "show", "p1"}} {
		if out := admin(append(args, "-f", "json")...); out == "" || out == "[]" {
			t.Errorf("openstack %s printed nothing", strings.Join(args, " "))
		}
	}
	if out := admin("port", "list", "--network", net, "-f", "json"); strings.Count(out, `"ID"`) != 3 { // p1, p2, the router interface
		t.Errorf("port list --network: %s", out)
	}

	// The second project sees none of it.
	out, err := osc("demo-user", "demo-pw", "demo", "network", "list", "-f", "json")
	if err != nil || strings.Contains(out, "net1") || !strings.Contains(out, "ext") {
		t.Errorf("demo's network list: %v %s", err, out)
	}
	if out, err := osc("demo-user", "demo-pw", "demo", "port", "show", p1); err == nil {
		t.Errorf("demo reads admin's port: %s", out)
	}
	if out, err := osc("demo-user", "demo-pw", "demo", "network", "delete", "net1"); err == nil {
		t.Errorf("demo deletes admin's network: %s", out)
	}
	if out, err := osc("admin", "wrong", "admin", "network", "list"); err == nil {
		t.Errorf("a wrong password lists networks: %s", out)
	}

	// Bad input reaches the CLI as Neutron's error.
	if out, err := osc("admin", adminPassword, "admin", "subnet", "create", "--network", "net1", "--subnet-range", "10.0.0.128/25", "overlap"); err == nil || !strings.Contains(out, "overlaps with another subnet") {
		t.Errorf("overlapping subnet: %v %s", err, out)
	}

	// The extensions, through python3-neutronclient's OSC plugin: a
	// trunk, a QoS policy and its bandwidth limit, an RBAC policy sharing
	// net1 with demo, an address group, a subnet pool (and a subnet from
	// it), a firewall policy and group on the router's interface.
	admin("port", "create", "--network", "net1", "pT", "-f", "json")
	trunk := admin("network", "trunk", "create", "--parent-port", "p1", "--subport", "port=pT,segmentation-type=vlan,segmentation-id=101", "trunk1", "-f", "json")
	if !strings.Contains(trunk, `"segmentation_id": 101`) {
		t.Errorf("network trunk create: %s", trunk)
	}
	admin("network", "qos", "policy", "create", "qp1")
	bw := admin("network", "qos", "rule", "create", "--type", "bandwidth-limit", "--max-kbps", "10000", "--max-burst-kbits", "1000", "--egress", "qp1", "-f", "json")
	if !strings.Contains(bw, `"max_kbps": 10000`) {
		t.Errorf("network qos rule create: %s", bw)
	}
	admin("port", "set", "--qos-policy", "qp1", "pT")
	rbac := field(admin("network", "rbac", "create", "--target-project", "demo", "--action", "access_as_shared", "--type", "network", "net1", "-f", "json"), "id")
	if out, err := osc("demo-user", "demo-pw", "demo", "network", "show", "net1", "-f", "json"); err != nil || !strings.Contains(out, net) {
		t.Errorf("demo cannot see the network shared with it: %v %s", err, out)
	}
	ag := admin("address", "group", "create", "--address", "10.0.0.5", "--address", "10.0.0.6/31", "ag1", "-f", "json")
	if !strings.Contains(ag, "10.0.0.5/32") || !strings.Contains(ag, "10.0.0.6/31") {
		t.Errorf("address group create: %s", ag)
	}
	admin("subnet", "pool", "create", "--pool-prefix", "10.100.0.0/16", "--default-prefix-length", "24", "pool1")
	admin("network", "create", "net2")
	pooled := admin("subnet", "create", "--subnet-pool", "pool1", "--network", "net2", "pooled", "-f", "json")
	if field(pooled, "cidr") != "10.100.0.0/24" {
		t.Errorf("subnet from the pool: %s", pooled)
	}
	if out, err := osc("admin", adminPassword, "admin", "subnet", "pool", "create", "--pool-prefix", "10.200.0.0/16", "--min-prefix-length", "26", "--default-prefix-length", "24", "bad"); err == nil || !strings.Contains(out, "Illegal prefix bounds") {
		t.Errorf("a pool whose default prefix length is shorter than its minimum: %v %s", err, out)
	}
	admin("firewall", "group", "rule", "create", "--protocol", "tcp", "--destination-port", "22", "--action", "allow", "--name", "ssh")
	admin("firewall", "group", "policy", "create", "--firewall-rule", "ssh", "in")
	var itfs []map[string]any
	if err := json.Unmarshal([]byte(admin("port", "list", "--device-owner", "network:router_interface", "-f", "json")), &itfs); err != nil || len(itfs) != 1 {
		t.Fatalf("router interfaces: %v %v", itfs, err)
	}
	itf, _ := itfs[0]["ID"].(string)
	fwg := admin("firewall", "group", "create", "--name", "fwg1", "--ingress-firewall-policy", "in", "--port", itf, "-f", "json")
	if field(fwg, "Status") != "ACTIVE" {
		t.Errorf("firewall group create: %s", fwg)
	}
	if out, err := osc("admin", adminPassword, "admin", "firewall", "group", "delete", "fwg1"); err == nil || !strings.Contains(out, "is still active") {
		t.Errorf("deleting a firewall group with ports: %v %s", err, out)
	}
	admin("firewall", "group", "set", "--no-port", "fwg1")
	admin("firewall", "group", "delete", "fwg1")
	admin("firewall", "group", "policy", "delete", "in")
	admin("firewall", "group", "rule", "delete", "ssh")
	admin("subnet", "delete", "pooled")
	admin("network", "delete", "net2")
	admin("subnet", "pool", "delete", "pool1")
	admin("address", "group", "delete", "ag1")
	admin("network", "rbac", "delete", rbac)
	admin("network", "trunk", "delete", "trunk1")
	admin("port", "delete", "pT")
	admin("network", "qos", "policy", "delete", "qp1")

	// Delete everything.
	admin("floating", "ip", "delete", fipID)
	admin("security", "group", "rule", "delete", rule)
	admin("port", "delete", "p1", "p2")
	admin("security", "group", "delete", "sg1")
	admin("router", "unset", "--external-gateway", "r1")
	admin("router", "remove", "subnet", "r1", "sub1")
	admin("router", "delete", "r1")
	admin("subnet", "delete", "sub1", "ext-sub")
	admin("network", "delete", "net1", "ext")
	if out := admin("network", "list", "-f", "json"); out != "[]" {
		t.Errorf("networks left: %s", out)
	}
	admin("user", "delete", "demo-user")
	admin("project", "delete", "demo")
}
