package neutron_test

import (
	"fmt"
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/taas/tapmirrors"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
)

// TestTaaS: a tap service and a tap flow become a native mirror from the
// source port to the service's port; a tap mirror one per direction to
// its remote address (GRE or ERSPAN, the tunnel id as key); deleting a
// port takes what taps it; TaaS's refusals.
func TestTaaS(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	store := e.srv.Store()
	n, err := networks.Create(ctx, c, networks.CreateOpts{Name: "taas"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: "10.70.0.0/24"}).Extract(); err != nil {
		t.Fatal(err)
	}
	port := func() *ports.Port {
		p, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: n.ID}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	vm, sink, other := port(), port(), port()
	mirror := func(id string) *model.Mirror {
		t.Helper()
		o, err := store.Get(ctx, model.MirrorKind, id)
		if err != nil {
			t.Fatalf("native mirror %s: %v", id, err)
		}
		return o.(*model.Mirror)
	}

	st, doc := e.raw(c, "POST", "/v2.0/taas/tap_services", `{"tap_service": {"name": "sink", "port_id": "`+sink.ID+`"}}`)
	ts, _ := doc["tap_service"].(map[string]any)
	if st != 201 || ts["status"] != "ACTIVE" {
		t.Fatalf("tap service: %d %v", st, doc)
	}
	st, doc = e.raw(c, "POST", "/v2.0/taas/tap_flows", `{"tap_flow": {"tap_service_id": "`+fmt.Sprint(ts["id"])+`", "source_port": "`+vm.ID+`", "direction": "BOTH", "vlan_filter": "10,20-30"}}`)
	tf, _ := doc["tap_flow"].(map[string]any)
	if st != 201 || tf["vlan_filter"] != "10,20-30" {
		t.Fatalf("tap flow: %d %v", st, doc)
	}
	if m := mirror(neutron.DerivedID("tap-flow", fmt.Sprint(tf["id"]))); m.PortID != vm.ID || m.DestPortID != sink.ID || m.Direction != "both" || m.VLANs != "10,20-30" {
		t.Errorf("tap flow's mirror: %+v", m)
	}

	tm, err := tapmirrors.Create(ctx, c, tapmirrors.CreateOpts{Name: "tm", PortID: vm.ID, MirrorType: tapmirrors.MirrorTypeErspanv1,
		RemoteIP: "192.0.2.9", Directions: tapmirrors.Directions{In: 101, Out: 102}}).Extract()
	if err != nil || tm.Directions.In != 101 || tm.Directions.Out != 102 || tm.RemoteIP != "192.0.2.9" {
		t.Fatalf("tap mirror: %+v %v", tm, err)
	}
	if m := mirror(neutron.DerivedID("tap-mirror-IN", tm.ID)); m.Direction != "in" || m.Encap != "erspan" || m.Key != 101 || m.RemoteIP.String() != "192.0.2.9" {
		t.Errorf("IN mirror: %+v", m)
	}
	if m := mirror(neutron.DerivedID("tap-mirror-OUT", tm.ID)); m.Direction != "out" || m.Key != 102 {
		t.Errorf("OUT mirror: %+v", m)
	}
	name := "renamed"
	if up, err := tapmirrors.Update(ctx, c, tm.ID, tapmirrors.UpdateOpts{Name: &name}).Extract(); err != nil || up.Name != name || up.Directions.In != 101 {
		t.Errorf("tap mirror update: %+v %v", up, err)
	}
	// A number is shown as a number.
	if st, doc := e.raw(c, "POST", "/v2.0/taas/tap_mirrors", `{"tap_mirror": {"port_id": "`+other.ID+`", "mirror_type": "gre", "remote_ip": "192.0.2.10", "directions": {"BOTH": 7}}}`); st != 201 ||
		fmt.Sprint(doc["tap_mirror"].(map[string]any)["directions"]) != "map[BOTH:7]" {
		t.Errorf("tap mirror with a number: %d %v", st, doc)
	}

	mirrorBody := func(dirs string) string {
		return `{"tap_mirror": {"port_id": "` + other.ID + `", "mirror_type": "gre", "remote_ip": "192.0.2.10", "directions": ` + dirs + `}}`
	}
	bob, bobProject := e.project("bob")
	bobNet, err := networks.Create(ctx, bob, networks.CreateOpts{Name: "bob"}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	bobPort, err := ports.Create(ctx, bob, ports.CreateOpts{NetworkID: bobNet.ID}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	e.refused([]refusal{
		{"direction of a mirror", "POST", "/v2.0/taas/tap_mirrors", mirrorBody(`{"UP": 5}`), 400, "HTTPBadRequest", "Unexpected keys supplied: UP"},
		{"tunnel id not a number", "POST", "/v2.0/taas/tap_mirrors", mirrorBody(`{"IN": "x"}`), 400, "HTTPBadRequest", "'x' is not an integer"},
		{"tunnel id taken", "POST", "/v2.0/taas/tap_mirrors", mirrorBody(`{"OUT": 101}`), 409, "TapMirrorTunnelConflict", "Tap Mirror with tunnel_id 101 already exists"},
		{"mirror type", "POST", "/v2.0/taas/tap_mirrors", `{"tap_mirror": {"port_id": "` + other.ID + `", "mirror_type": "vxlan", "remote_ip": "192.0.2.10", "directions": {"IN": 9}}}`, 400, "HTTPBadRequest", "'vxlan' is not in ['erspanv1', 'gre']"},
		{"remote address", "POST", "/v2.0/taas/tap_mirrors", `{"tap_mirror": {"port_id": "` + other.ID + `", "mirror_type": "gre", "remote_ip": "nowhere", "directions": {"IN": 9}}}`, 400, "HTTPBadRequest", "'nowhere' is not a valid IP address"},
		{"another project's port", "POST", "/v2.0/taas/tap_mirrors", `{"tap_mirror": {"port_id": "` + bobPort.ID + `", "mirror_type": "gre", "remote_ip": "192.0.2.10", "directions": {"IN": 9}}}`, 403, "PortDoesNotBelongToTenant", "does not belong to the tenant"},
		{"flow direction", "POST", "/v2.0/taas/tap_flows", `{"tap_flow": {"tap_service_id": "` + fmt.Sprint(ts["id"]) + `", "source_port": "` + other.ID + `", "direction": "SIDEWAYS"}}`, 400, "HTTPBadRequest", "'SIDEWAYS' is not in ['IN', 'OUT', 'BOTH']"},
		{"VLAN filter", "POST", "/v2.0/taas/tap_flows", `{"tap_flow": {"tap_service_id": "` + fmt.Sprint(ts["id"]) + `", "source_port": "` + other.ID + `", "direction": "IN", "vlan_filter": "10-"}}`, 400, "HTTPBadRequest", "'10-' is not a valid input"},
		{"VLAN out of range", "POST", "/v2.0/taas/tap_flows", `{"tap_flow": {"tap_service_id": "` + fmt.Sprint(ts["id"]) + `", "source_port": "` + other.ID + `", "direction": "IN", "vlan_filter": "5000"}}`, 400, "HTTPBadRequest", "is not a valid VLAN range"},
		{"missing service", "POST", "/v2.0/taas/tap_flows", `{"tap_flow": {"tap_service_id": "0b5d2a5e-0000-4000-8000-000000000000", "source_port": "` + other.ID + `", "direction": "IN"}}`, 404, "TapServiceNotFound", "does not exist"},
		{"service of another project", "POST", "/v2.0/taas/tap_flows", `{"tap_flow": {"tenant_id": "` + bobProject + `", "tap_service_id": "` + fmt.Sprint(ts["id"]) + `", "source_port": "` + bobPort.ID + `", "direction": "IN"}}`, 403, "TapServiceNotBelongToTenant", "does not belong to the tenant"},
	})
	// Another project sees none of it.
	if st, doc := e.raw(bob, "GET", "/v2.0/taas/tap_mirrors/"+tm.ID, ""); st != 404 {
		t.Errorf("bob reads the mirror: %d %v", st, doc)
	}
	// Deleting the mirrored port deletes its flow and mirrors.
	if err := ports.Delete(ctx, c, vm.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.raw(c, "GET", "/v2.0/taas/tap_mirrors/"+tm.ID, ""); st != 404 {
		t.Errorf("tap mirror outlived its port: %d", st)
	}
	if st, _ := e.raw(c, "GET", "/v2.0/taas/tap_flows/"+fmt.Sprint(tf["id"]), ""); st != 404 {
		t.Errorf("tap flow outlived its source port: %d", st)
	}
	if _, err := store.Get(ctx, model.MirrorKind, neutron.DerivedID("tap-mirror-IN", tm.ID)); err == nil {
		t.Error("native mirror outlived its port")
	}
	// Deleting the service's port deletes the service.
	if err := ports.Delete(ctx, c, sink.ID).ExtractErr(); err != nil {
		t.Fatal(err)
	}
	if st, _ := e.raw(c, "GET", "/v2.0/taas/tap_services/"+fmt.Sprint(ts["id"]), ""); st != 404 {
		t.Errorf("tap service outlived its port: %d", st)
	}
}
