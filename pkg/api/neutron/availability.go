package neutron

import (
	"net/http"

	"github.com/nagare/nagare/pkg/neutron"
)

// Network IP availabilities: GET /network-ip-availabilities[/{network}].

var availabilityAttrs = attrs{"network_id": {}, "network_name": {}, "tenant_id": {}, "project_id": {}, "ip_version": {},
	"total_ips": {}, "used_ips": {}, "subnet_ip_availability": {}}

func viewAvailability(a *neutron.IPAvailability) map[string]any {
	subs := []map[string]any{}
	for _, s := range a.Subnets {
		subs = append(subs, map[string]any{"subnet_id": s.Subnet.ID, "subnet_name": s.Subnet.Name, "cidr": s.Subnet.CIDR.String(),
			"ip_version": s.Subnet.IPVersion, "total_ips": s.Total, "used_ips": s.Used})
	}
	n := a.Network
	return map[string]any{"network_id": n.ID, "network_name": n.Name, "tenant_id": n.ProjectID, "project_id": n.ProjectID,
		"total_ips": a.Total, "used_ips": a.Used, "subnet_ip_availability": subs}
}

func (a *API) registerAvailability(mux *http.ServeMux) {
	base := Prefix + "/network-ip-availabilities"
	mux.HandleFunc("GET "+base, func(w http.ResponseWriter, r *http.Request) {
		c := caller(r)
		lq, err := parseList(r, availabilityAttrs, c)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		// ip_version filters the subnets, not the networks.
		ver := lq.filters["ip_version"]
		delete(lq.filters, "ip_version")
		avs, err := a.svc.IPAvailabilities(r.Context(), c, "")
		if err != nil {
			a.fail(w, r, err)
			return
		}
		items := []map[string]any{}
		for _, av := range avs {
			if len(ver) > 0 {
				keep := av.Subnets[:0]
				for _, s := range av.Subnets {
					if valueMatches("ip_version", s.Subnet.IPVersion, ver[0]) {
						keep = append(keep, s)
					}
				}
				av.Subnets = keep
				av.Total.SetInt64(0)
				av.Used.SetInt64(0)
				for _, s := range keep {
					av.Total.Add(av.Total, s.Total)
					av.Used.Add(av.Used, s.Used)
				}
			}
			if m := viewAvailability(av); lq.matches(m) {
				items = append(items, m)
			}
		}
		a.writeCollection(w, r, "network_ip_availabilities", items, lq, neutron.NetworkKind)
	})
	mux.HandleFunc("GET "+base+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		avs, err := a.svc.IPAvailabilities(r.Context(), caller(r), pathID(r, "id"))
		var doc any
		if err == nil {
			doc = map[string]any{"network_ip_availability": project(viewAvailability(avs[0]), fields(r))}
		}
		a.reply(w, r, err, http.StatusOK, doc)
	})
}
