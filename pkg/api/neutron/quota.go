package neutron

import (
	"maps"
	"net/http"
	"slices"

	"github.com/nagare/nagare/pkg/neutron"
)

// Quotas (quotas and quota_details).

func (a *API) registerQuotas(mux *http.ServeMux) {
	q := Prefix + "/quotas"
	mux.HandleFunc("GET "+q, func(w http.ResponseWriter, r *http.Request) {
		list, err := a.svc.ListQuotas(r.Context(), caller(r))
		out := []map[string]any{}
		for _, pq := range list {
			m := map[string]any{"project_id": pq.ProjectID, "tenant_id": pq.ProjectID}
			for k, v := range pq.Limits {
				m[k] = v
			}
			out = append(out, m)
		}
		a.reply(w, r, err, http.StatusOK, map[string]any{"quotas": out})
	})
	mux.HandleFunc("GET "+q+"/tenant", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"tenant": map[string]string{"tenant_id": caller(r).ProjectID}})
	})
	mux.HandleFunc("GET "+q+"/{project}", func(w http.ResponseWriter, r *http.Request) {
		lim, err := a.svc.Quotas(r.Context(), caller(r), r.PathValue("project"))
		a.reply(w, r, err, http.StatusOK, map[string]any{"quota": lim})
	})
	mux.HandleFunc("GET "+q+"/{project}/default", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"quota": neutron.DefaultQuotas})
	})
	mux.HandleFunc("GET "+q+"/{project}/details", func(w http.ResponseWriter, r *http.Request) {
		d, err := a.svc.QuotaDetails(r.Context(), caller(r), r.PathValue("project"))
		a.reply(w, r, err, http.StatusOK, map[string]any{"quota": d})
	})
	mux.HandleFunc("PUT "+q+"/{project}", func(w http.ResponseWriter, r *http.Request) {
		var lim map[string]int
		b, err := readBody(r, "quota")
		if err == nil {
			lim, err = decodeQuotas(b)
		}
		if err == nil {
			lim, err = a.svc.SetQuotas(r.Context(), caller(r), r.PathValue("project"), lim)
		}
		a.reply(w, r, err, http.StatusOK, map[string]any{"quota": lim})
	})
	mux.HandleFunc("DELETE "+q+"/{project}", func(w http.ResponseWriter, r *http.Request) {
		a.done(w, r, a.svc.ResetQuotas(r.Context(), caller(r), r.PathValue("project")), http.StatusNoContent)
	})
}

// decodeQuotas reads {"<resource>": <limit>, …}; null is no limit Neutron
// accepts.
func decodeQuotas(b Body) (map[string]int, error) {
	out := make(map[string]int, len(b))
	for _, k := range slices.Sorted(maps.Keys(b)) {
		n, null, _, err := b.integer(k)
		if err != nil {
			return nil, err
		}
		if null {
			return nil, invalid(k, "'None' is too small - must be at least '-1'")
		}
		out[k] = n
	}
	return out, nil
}
