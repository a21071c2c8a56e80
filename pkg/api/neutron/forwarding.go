package neutron

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/nagare/nagare/pkg/neutron"
)

func decodeJSON(r *http.Request, v any) error {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// Port forwardings live under their floating IP.

func (a *API) listForwardings(w http.ResponseWriter, r *http.Request) {
	c := caller(r)
	lq, err := parseList(r, neutron.PortForwardings, c)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	pfs, err := a.svc.ListPortForwardings(r.Context(), c, pathID(r, "fip"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var items []map[string]any
	err = a.svc.Read(r.Context(), c, func(v *neutron.Viewer) error {
		for _, pf := range pfs {
			if m := v.View(pf); lq.matches(m) {
				items = append(items, m)
			}
		}
		return nil
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.writeCollection(w, r, "port_forwardings", items, lq, neutron.PortForwardings)
}

func (a *API) renderForwarding(w http.ResponseWriter, r *http.Request, pf *neutron.PortForwarding, status int) {
	var m map[string]any
	_ = a.svc.Read(r.Context(), caller(r), func(v *neutron.Viewer) error {
		m = project(v.View(pf), nonEmpty(r.URL.Query()["fields"]))
		return nil
	})
	writeJSON(w, status, map[string]any{"port_forwarding": m})
}

func (a *API) showForwarding(w http.ResponseWriter, r *http.Request) {
	pf, err := a.svc.GetPortForwarding(r.Context(), caller(r), pathID(r, "fip"), pathID(r, "id"))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.renderForwarding(w, r, pf, http.StatusOK)
}

func (a *API) createForwarding(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(r, "port_forwarding")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	pf, err := a.svc.CreatePortForwarding(r.Context(), caller(r), pathID(r, "fip"), b)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.renderForwarding(w, r, pf, http.StatusCreated)
}

func (a *API) updateForwarding(w http.ResponseWriter, r *http.Request) {
	b, err := readBody(r, "port_forwarding")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	pf, err := a.svc.UpdatePortForwarding(r.Context(), caller(r), pathID(r, "fip"), pathID(r, "id"), b)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	a.renderForwarding(w, r, pf, http.StatusOK)
}

func (a *API) deleteForwarding(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.DeletePortForwarding(r.Context(), caller(r), pathID(r, "fip"), pathID(r, "id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// Quotas (quotas and quota_details).

func (a *API) registerQuotas(mux *http.ServeMux) {
	q := Prefix + "/quotas"
	mux.HandleFunc("GET "+q, func(w http.ResponseWriter, r *http.Request) {
		list, err := a.svc.ListQuotas(r.Context(), caller(r))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		out := []map[string]any{}
		for _, pq := range list {
			m := map[string]any{"project_id": pq.ProjectID, "tenant_id": pq.ProjectID}
			for k, v := range pq.Limits {
				m[k] = v
			}
			out = append(out, m)
		}
		writeJSON(w, http.StatusOK, map[string]any{"quotas": out})
	})
	mux.HandleFunc("GET "+q+"/tenant", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"tenant": map[string]string{"tenant_id": caller(r).ProjectID}})
	})
	mux.HandleFunc("GET "+q+"/{project}", func(w http.ResponseWriter, r *http.Request) {
		lim, err := a.svc.Quotas(r.Context(), caller(r), r.PathValue("project"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"quota": lim})
	})
	mux.HandleFunc("GET "+q+"/{project}/default", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"quota": neutron.DefaultQuotas})
	})
	mux.HandleFunc("GET "+q+"/{project}/details", func(w http.ResponseWriter, r *http.Request) {
		d, err := a.svc.QuotaDetails(r.Context(), caller(r), r.PathValue("project"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"quota": d})
	})
	mux.HandleFunc("PUT "+q+"/{project}", func(w http.ResponseWriter, r *http.Request) {
		b, err := readBody(r, "quota")
		if err != nil {
			a.fail(w, r, err)
			return
		}
		lim, err := a.svc.SetQuotas(r.Context(), caller(r), r.PathValue("project"), b)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"quota": lim})
	})
	mux.HandleFunc("DELETE "+q+"/{project}", func(w http.ResponseWriter, r *http.Request) {
		if err := a.svc.ResetQuotas(r.Context(), caller(r), r.PathValue("project")); err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
}
