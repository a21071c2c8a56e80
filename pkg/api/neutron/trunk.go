package neutron

import (
	"net/http"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// Trunks (trunk, trunk-details): CRUD, PUT add_subports and
// remove_subports, GET get_subports.

var trunkAttrs = std.with(attrs{
	"name":           {post: true, put: true},
	"port_id":        {post: true, required: true},
	"admin_state_up": {post: true, put: true},
	"status":         {},
	"sub_ports":      {post: true},
})

func decodeTrunk(b Body, _ *identity.Context, post bool) (neutron.TrunkRequest, error) {
	var r neutron.TrunkRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if post {
		if r.PortID, _, err = b.uuid("port_id"); err != nil {
			return r, err
		}
		if b.has("sub_ports") {
			if r.Subports, err = decodeSubports(b, true); err != nil {
				return r, err
			}
		}
	}
	r.AdminStateUp, err = b.optBool("admin_state_up")
	return r, err
}

// decodeSubports reads sub_ports (neutron-lib's validate_subports and the
// trunk plugin's segmentation checks); a removal needs only port_id.
func decodeSubports(b Body, add bool) ([]neutron.SubportRequest, error) {
	var raw []map[string]any
	if _, err := b.raw("sub_ports", &raw, "Invalid data format for subports"); err != nil {
		return nil, err
	}
	var out []neutron.SubportRequest
	seen := map[string]bool{}
	segs := map[string]bool{}
	for _, m := range raw {
		id, _ := m["port_id"].(string)
		if _, ok := m["port_id"]; !ok {
			return nil, invalid("sub_ports", "A valid port UUID must be specified")
		}
		sb := Body{"port_id": []byte(mustJSON(m["port_id"]))}
		pid, _, err := sb.uuid("port_id")
		if err != nil {
			return nil, invalid("sub_ports", "Invalid UUID for subport: '%v'", m["port_id"])
		}
		if seen[pid] {
			return nil, invalid("sub_ports", "Non unique UUID for subport: '%s'", id)
		}
		seen[pid] = true
		sp := neutron.SubportRequest{PortID: pid}
		if !add {
			out = append(out, sp)
			continue
		}
		typ, _ := m["segmentation_type"].(string)
		seg, hasSeg := m["segmentation_id"].(float64)
		if typ != "inherit" {
			if typ == "" || !hasSeg {
				return nil, neutron.InvalidInput("Invalid subport details '%s': missing segmentation information. Must specify both segmentation_id and segmentation_type", mustJSON(m))
			}
			if typ != "vlan" {
				return nil, neutron.InvalidInput("Unknown segmentation_type '%s'", typ)
			}
			if seg != float64(int(seg)) || seg < 1 || seg > 4094 {
				return nil, neutron.InvalidInput("Segmentation ID '%v' is not in range", m["segmentation_id"])
			}
			key := typ + "/" + mustJSON(int(seg))
			if segs[key] {
				return nil, invalid("sub_ports", "Segmentation ID '%d' for '%s' is not unique", int(seg), pid)
			}
			segs[key] = true
		}
		sp.SegmentationType, sp.SegmentationID = typ, int(seg)
		out = append(out, sp)
	}
	return out, nil
}

func viewSubports(v *viewer, id string) []map[string]any {
	out := []map[string]any{}
	for _, sp := range v.TrunkSubports(id) {
		m := map[string]any{"port_id": sp.PortID, "segmentation_type": sp.SegmentationType, "segmentation_id": sp.SegmentationID}
		if p := v.Port(sp.PortID); p != nil {
			m["mac_address"] = p.MACAddress.String()
		}
		out = append(out, m)
	}
	return out
}

func viewTrunk(v *viewer, x *neutron.Trunk) map[string]any {
	m := stdView(&x.Std, true)
	m["port_id"], m["admin_state_up"] = x.PortID, x.AdminStateUp
	m["status"] = "DOWN"
	if p := v.Port(x.PortID); p != nil && p.Status == "ACTIVE" {
		m["status"] = "ACTIVE"
	}
	subs := viewSubports(v, x.ID)
	for _, s := range subs {
		delete(s, "mac_address")
	}
	m["sub_ports"] = subs
	return m
}

// registerTrunkActions adds add_subports, remove_subports ({"sub_ports":
// [...]} in, the trunk out) and get_subports.
func (a *API) registerTrunkActions(mux *http.ServeMux) {
	for _, add := range []bool{true, false} {
		name := "remove_subports"
		if add {
			name = "add_subports"
		}
		a.action(mux, "trunks/{id}/"+name, func(r *http.Request, c *identity.Context, id string, b Body) (any, error) {
			for k := range b {
				if k != "sub_ports" {
					return nil, neutron.HTTPBadRequest("Unrecognized attribute(s) '%s'", k)
				}
			}
			subs, err := decodeSubports(b, add)
			if err != nil {
				return nil, err
			}
			t, err := a.svc.ChangeSubports(r.Context(), c, id, subs, add)
			if err != nil {
				return nil, err
			}
			return a.viewOne(r, a.resource("trunk"), t)
		})
	}
	mux.HandleFunc("GET "+Prefix+"/trunks/{id}/get_subports", func(w http.ResponseWriter, r *http.Request) {
		var subs []map[string]any
		_, err := a.svc.Subports(r.Context(), caller(r), pathID(r, "id"))
		if err == nil {
			err = a.read(r.Context(), caller(r), func(v *viewer) error {
				subs = viewSubports(v, pathID(r, "id"))
				for _, s := range subs {
					delete(s, "mac_address")
				}
				return nil
			})
		}
		a.reply(w, r, err, http.StatusOK, map[string]any{"sub_ports": subs})
	})
}
