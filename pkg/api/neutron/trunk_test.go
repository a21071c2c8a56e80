package neutron_test

import (
	"testing"

	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/trunks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nagare/nagare/pkg/model"
)

// TestTrunks: a subport translates to its bridge port marked with the
// parent and the VLAN, and back to an ordinary port when it leaves the
// trunk; Neutron's refusals (a port in two trunks, a parent as a subport,
// duplicate VLANs, a bigger MTU, deleting ports in use).
func TestTrunks(t *testing.T) {
	e := newEnv(t)
	ctx, c := e.ctx, e.admin
	net := func(name, cidr string, mtu int) string {
		t.Helper()
		n, err := networks.Create(ctx, c, networks.CreateOpts{Name: name}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		if mtu != 0 {
			if st, doc := e.raw(c, "PUT", "/v2.0/networks/"+n.ID, `{"network": {"mtu": 1400}}`); st != 200 {
				t.Fatalf("mtu: %d %v", st, doc)
			}
		}
		if _, err := subnets.Create(ctx, c, subnets.CreateOpts{NetworkID: n.ID, IPVersion: 4, CIDR: cidr}).Extract(); err != nil {
			t.Fatal(err)
		}
		return n.ID
	}
	vmNet, blue, red := net("vm", "10.70.0.0/24", 1400), net("blue", "10.71.0.0/24", 0), net("red", "10.72.0.0/24", 1400)
	port := func(n string) string {
		t.Helper()
		p, err := ports.Create(ctx, c, ports.CreateOpts{NetworkID: n}).Extract()
		if err != nil {
			t.Fatal(err)
		}
		return p.ID
	}
	parent, sub1, sub2, spare := port(vmNet), port(red), port(red), port(red)
	tr, err := trunks.Create(ctx, c, trunks.CreateOpts{Name: "t", PortID: parent,
		Subports: []trunks.Subport{{PortID: sub1, SegmentationType: "vlan", SegmentationID: 101}}}).Extract()
	if err != nil {
		t.Fatal(err)
	}
	native := func(id string) *model.Port {
		t.Helper()
		o, err := e.srv.Store().Get(ctx, model.PortKind, id)
		if err != nil {
			t.Fatal(err)
		}
		return o.(*model.Port)
	}
	if np := native(sub1); np.ParentID != parent || np.ParentVLAN != 101 || np.BridgeID != red {
		t.Errorf("subport's native port %+v, want parent %s vlan 101 on %s", np, parent, red)
	}
	got, err := trunks.AddSubports(ctx, c, tr.ID, trunks.AddSubportsOpts{Subports: []trunks.Subport{{PortID: sub2, SegmentationType: "vlan", SegmentationID: 102}}}).Extract()
	if err != nil || len(got.Subports) != 2 {
		t.Fatalf("add subport: %+v %v", got, err)
	}
	if st, doc := e.raw(c, "GET", "/v2.0/ports/"+sub2, ""); st != 200 || doc["port"].(map[string]any)["device_owner"] != "trunk:subport" {
		t.Errorf("subport's owner: %v", doc)
	}
	st, doc := e.raw(c, "GET", "/v2.0/ports/"+parent, "")
	details, _ := doc["port"].(map[string]any)["trunk_details"].(map[string]any)
	if st != 200 || details["trunk_id"] != tr.ID || len(details["sub_ports"].([]any)) != 2 {
		t.Errorf("parent's trunk_details: %v", doc)
	}
	if _, err := trunks.RemoveSubports(ctx, c, tr.ID, trunks.RemoveSubportsOpts{Subports: []trunks.RemoveSubport{{PortID: sub2}}}).Extract(); err != nil {
		t.Fatal(err)
	}
	if np := native(sub2); np.ParentID != "" || np.ParentVLAN != 0 {
		t.Errorf("a removed subport is still one: %+v", np)
	}

	trunkPath := "/v2.0/trunks/" + tr.ID
	e.refused([]refusal{
		{"parent in another trunk", "POST", "/v2.0/trunks", `{"trunk": {"port_id": "` + parent + `"}}`, 409, "TrunkPortInUse", "is in use by another trunk"},
		{"subport as a parent", "POST", "/v2.0/trunks", `{"trunk": {"port_id": "` + sub1 + `"}}`, 409, "ParentPortInUse", "is not eligible for use as a parent port"},
		{"subport twice", "PUT", trunkPath + "/add_subports", `{"sub_ports": [{"port_id": "` + sub1 + `", "segmentation_type": "vlan", "segmentation_id": 200}]}`, 409, "PortInUseAsSubPort", "is currently a subport for trunk"},
		{"parent as its own subport", "PUT", trunkPath + "/add_subports", `{"sub_ports": [{"port_id": "` + parent + `", "segmentation_type": "vlan", "segmentation_id": 200}]}`, 409, "ParentPortInUse", ""},
		{"VLAN in use on the trunk", "PUT", trunkPath + "/add_subports", `{"sub_ports": [{"port_id": "` + spare + `", "segmentation_type": "vlan", "segmentation_id": 101}]}`, 409, "DuplicateSubPort", "segmentation_type vlan and segmentation_id 101 already in use"},
		{"VLAN out of range", "PUT", trunkPath + "/add_subports", `{"sub_ports": [{"port_id": "` + spare + `", "segmentation_type": "vlan", "segmentation_id": 4095}]}`, 400, "InvalidInput", "Segmentation ID '4095' is not in range"},
		{"VLAN without a type", "PUT", trunkPath + "/add_subports", `{"sub_ports": [{"port_id": "` + spare + `", "segmentation_id": 7}]}`, 400, "InvalidInput", "missing segmentation information"},
		{"subport MTU over the parent's", "PUT", trunkPath + "/add_subports", `{"sub_ports": [{"port_id": "` + port(blue) + `", "segmentation_type": "vlan", "segmentation_id": 300}]}`, 409, "SubPortMtuGreaterThanTrunkPortMtu", "cannot be greater than MTU 1400"},
		{"removing a port that is no subport", "PUT", trunkPath + "/remove_subports", `{"sub_ports": [{"port_id": "` + spare + `"}]}`, 404, "SubPortNotFound", "could not be found"},
		{"deleting a parent", "DELETE", "/v2.0/ports/" + parent, "", 409, "PortInUseAsTrunkParent", "is currently a parent port for trunk"},
		{"deleting a subport", "DELETE", "/v2.0/ports/" + sub1, "", 409, "PortInUseAsSubPort", "is currently a subport for trunk"},
	})
	if err := trunks.Delete(ctx, c, tr.ID).ExtractErr(); err != nil {
		t.Fatalf("delete an unbound trunk: %v", err)
	}
	if np := native(sub1); np.ParentID != "" {
		t.Errorf("the subport of a deleted trunk is still one: %+v", np)
	}
}
