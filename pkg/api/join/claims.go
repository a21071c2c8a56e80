package join

import (
	"context"
	"net/http"

	"github.com/nagare/nagare/pkg/hostclaim"
)

// The host-claim routes: a joined agent asks the server to make the
// topology changes it may make (package hostclaim), authenticated by its
// host certificate; the host acted for is the certificate's, never one the
// request names.

// HealthPortRequest is the body of POST /api/v1/host-claims/health-port.
type HealthPortRequest struct {
	RouterID string `json:"router_id"`
}

// HealthPort is its answer.
type HealthPort struct {
	PortID string `json:"port_id"`
}

func (a *API) registerClaims(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/v1/host-claims/host", a.asHost(body(a, http.StatusNoContent, func(r *http.Request, req hostclaim.HostInfo) (any, error) {
		return nil, a.claims.SetHost(r.Context(), hostOf(r), req)
	})))
	mux.HandleFunc("POST /api/v1/host-claims/uplink", a.asHost(body(a, http.StatusNoContent, func(r *http.Request, req hostclaim.Uplink) (any, error) {
		return nil, a.claims.ClaimUplink(r.Context(), hostOf(r), req)
	})))
	mux.HandleFunc("POST /api/v1/host-claims/health-port", a.asHost(body(a, http.StatusOK, func(r *http.Request, req HealthPortRequest) (any, error) {
		id, err := a.claims.EnsureHealthPort(r.Context(), hostOf(r), req.RouterID)
		if err != nil {
			return nil, err
		}
		return HealthPort{PortID: id}, nil
	})))
	mux.HandleFunc("DELETE /api/v1/host-claims/health-port/{id}", a.asHost(func(w http.ResponseWriter, r *http.Request) {
		if err := a.claims.RemoveHealthPort(r.Context(), hostOf(r), r.PathValue("id")); err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

type hostKey struct{}

// asHost authenticates the request's client certificate before anything
// else reads the request, and gives h the host (hostOf).
func (a *API) asHost(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, hostID, err := a.svc.Authenticate(r.Context(), peer(r))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), hostKey{}, hostID)))
	}
}

// hostOf is the host asHost authenticated.
func hostOf(r *http.Request) string {
	h, _ := r.Context().Value(hostKey{}).(string)
	return h
}
