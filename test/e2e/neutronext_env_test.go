//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/projects"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/roles"
	"github.com/gophercloud/gophercloud/v2/openstack/identity/v3/users"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/test/e2e/harness"
)

// extEnv is the world of TestNeutronExtensions: two hypervisors, two
// tenant networks joined by a router, and gophercloud as admin.
type extEnv struct {
	t        *testing.T
	env      *harness.Env
	prov     *gophercloud.ProviderClient
	nc       *gophercloud.ServiceClient
	ctx      context.Context
	hv1, hv2 *harness.Hypervisor
	netA     string // 10.70.0.0/24
	netB     string // 10.71.0.0/24
	subA     string
	subB     string
	router   string
	mtu      int
}

const extPassword = "e2e-ext-secret"

func newExtEnv(t *testing.T) *extEnv {
	t.Helper()
	env := harness.New(t, harness.Options{Hypervisors: 2, AdminPassword: extPassword})
	env.MustCLI(t, "create tunnel-zone name tz type vxlan")
	for _, h := range env.Hosts {
		env.MustCLI(t, "tunnel-zone tzone0 add member host %s address %s", h.Alias, h.TunnelIP)
	}
	e := &extEnv{t: t, env: env, ctx: context.Background(), hv1: env.Host("hv1"), hv2: env.Host("hv2"), mtu: env.UnderlayMTU - 50}
	var err error
	e.prov, e.nc = e.login("admin", extPassword, "admin")
	e.netA, e.subA = e.network("ext-a", "10.70.0")
	e.netB, e.subB = e.network("ext-b", "10.71.0")
	r, err := routers.Create(e.ctx, e.nc, routers.CreateOpts{Name: "ext-r"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	e.router = r.ID
	for _, s := range []string{e.subA, e.subB} {
		if _, err := routers.AddInterface(e.ctx, e.nc, r.ID, routers.AddInterfaceOpts{SubnetID: s}).Extract(); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *extEnv) login(user, password, project string) (*gophercloud.ProviderClient, *gophercloud.ServiceClient) {
	e.t.Helper()
	return e.env.Neutron(e.ctx, e.t, user, password, project)
}

// network creates a network with a DHCP subnet prefix.0/24, gateway .1.
func (e *extEnv) network(name, prefix string) (string, string) {
	e.t.Helper()
	n, err := networks.Create(e.ctx, e.nc, networks.CreateOpts{Name: name}).Extract()
	if err != nil {
		e.t.Fatal(err)
	}
	s, err := subnets.Create(e.ctx, e.nc, subnets.CreateOpts{NetworkID: n.ID, Name: name + "-v4", IPVersion: 4, CIDR: prefix + ".0/24",
		GatewayIP: ptrTo(prefix + ".1"), EnableDHCP: ptrTo(true)}).Extract()
	if err != nil {
		e.t.Fatal(err)
	}
	return n.ID, s.ID
}

// port creates a port of opts bound on host h (admin only: binding:host_id).
func (e *extEnv) port(opts ports.CreateOptsBuilder, h *harness.Hypervisor) *ports.Port {
	e.t.Helper()
	p, err := ports.Create(e.ctx, e.nc, portsbinding.CreateOptsExt{CreateOptsBuilder: opts, HostID: h.Name}).Extract()
	if err != nil {
		e.t.Fatalf("port: %v", err)
	}
	return p
}

// vm plugs a VM into port p on h, addressed with the port's first fixed
// IP and routed through the subnet's gateway (.1).
func (e *extEnv) vm(name string, h *harness.Hypervisor, p *ports.Port, extra ...string) *harness.VM {
	e.t.Helper()
	addr := p.FixedIPs[0].IPAddress
	gw := addr[:strings.LastIndex(addr, ".")] + ".1"
	return e.env.AddVM(e.t, h, name, harness.VMConfig{MAC: p.MACAddress, Tap: "tap" + p.ID[:11],
		Addrs: append([]string{addr + "/24"}, extra...), Gateway: gw, MTU: e.mtu})
}

// project creates a project with a member user and logs in as it.
func (e *extEnv) project(name string) (*gophercloud.ServiceClient, string) {
	e.t.Helper()
	ic, err := openstack.NewIdentityV3(e.prov, gophercloud.EndpointOpts{})
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := projects.Create(e.ctx, ic, projects.CreateOpts{Name: name, DomainID: "default"}).Extract()
	if err != nil {
		e.t.Fatalf("project %s: %v", name, err)
	}
	u, err := users.Create(e.ctx, ic, users.CreateOpts{Name: name + "-user", Password: "pw-" + name, DefaultProjectID: p.ID, DomainID: "default"}).Extract()
	if err != nil {
		e.t.Fatalf("user: %v", err)
	}
	pages, err := roles.List(ic, roles.ListOpts{Name: "member"}).AllPages(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	rs, err := roles.ExtractRoles(pages)
	if err != nil || len(rs) != 1 {
		e.t.Fatalf("role member: %v %v", rs, err)
	}
	if err := roles.Assign(e.ctx, ic, rs[0].ID, roles.AssignOpts{UserID: u.ID, ProjectID: p.ID}).ExtractErr(); err != nil {
		e.t.Fatal(err)
	}
	_, nc := e.login(name+"-user", "pw-"+name, name)
	return nc, p.ID
}

// mustNotPing fails if dst answers from vm.
func mustNotPing(t *testing.T, vm *harness.VM, dst string) {
	t.Helper()
	if r := vm.Ping(dst, 3, "0.2"); r.Received != 0 {
		t.Fatalf("%s → %s answered %d/%d, want none:\n%s", vm.Name, dst, r.Received, r.Sent, r.Output)
	}
}

// rate runs iperf3 from client to server for secs seconds after a
// second that is not counted (the bucket's initial burst) and returns the
// received rate in bit/s.
func rate(t *testing.T, client, server *harness.VM, secs int) float64 {
	t.Helper()
	harness.Require(t, "iperf3")
	server.Background(t, "iperf3", "-s", "-1", "-B", server.Addr)
	var out []byte
	err := harness.Eventually(10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+20)*time.Second)
		defer cancel()
		out, _ = client.NS.Command(ctx, "iperf3", "-c", server.Addr, "-t", strconv.Itoa(secs), "-O", "1", "-J").CombinedOutput()
		if strings.Contains(string(out), "Connection refused") || strings.Contains(string(out), "unable to connect") {
			return fmt.Errorf("the server is not listening yet")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("iperf3 %s → %s: %v\n%s", client.Name, server.Addr, err, out)
	}
	var res struct {
		End struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil || res.Error != "" {
		t.Fatalf("iperf3 %s → %s: %v %s\n%s", client.Name, server.Addr, err, res.Error, out)
	}
	return res.End.SumReceived.BitsPerSecond
}

// sendTagged sends count ICMP echo requests in 802.1Q frames of vlan out
// of the VM's eth0 with a raw socket (this kernel makes no VLAN
// interfaces, 8021q being absent).
func sendTagged(t *testing.T, vm *harness.VM, dstMAC, srcMAC string, vlan int, src, dst string, count int) {
	t.Helper()
	script := filepath.Join(t.TempDir(), "tagged.py")
	err := os.WriteFile(script, []byte(`import socket, struct, sys, time
def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    s += s >> 16
    return ~s & 0xffff
dst, src = bytes.fromhex(sys.argv[1].replace(":", "")), bytes.fromhex(sys.argv[2].replace(":", ""))
vlan, sip, dip = int(sys.argv[3]), socket.inet_aton(sys.argv[4]), socket.inet_aton(sys.argv[5])
icmp = struct.pack("!BBHHH", 8, 0, 0, 0x4242, 1) + b"nagare-trunk" * 4
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0, sip, dip)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
frame = dst + src + struct.pack("!HH", 0x8100, vlan) + struct.pack("!H", 0x0800) + ip + icmp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for i in range(int(sys.argv[6])):
    s.send(frame)
    time.sleep(0.2)
`), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	vm.NS.MustRun(t, "python3", script, dstMAC, srcMAC, strconv.Itoa(vlan), src, dst, strconv.Itoa(count))
}
