package join

import (
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
	mux.HandleFunc("POST /api/v1/host-claims/host", a.asHost(func(w http.ResponseWriter, r *http.Request, host string) error {
		var req hostclaim.HostInfo
		if !decode(w, r, &req) {
			return nil
		}
		return done(w, a.claims.SetHost(r.Context(), host, req))
	}))
	mux.HandleFunc("POST /api/v1/host-claims/uplink", a.asHost(func(w http.ResponseWriter, r *http.Request, host string) error {
		var req hostclaim.Uplink
		if !decode(w, r, &req) {
			return nil
		}
		return done(w, a.claims.ClaimUplink(r.Context(), host, req))
	}))
	mux.HandleFunc("POST /api/v1/host-claims/health-port", a.asHost(func(w http.ResponseWriter, r *http.Request, host string) error {
		var req HealthPortRequest
		if !decode(w, r, &req) {
			return nil
		}
		id, err := a.claims.EnsureHealthPort(r.Context(), host, req.RouterID)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, HealthPort{PortID: id})
		return nil
	}))
	mux.HandleFunc("DELETE /api/v1/host-claims/health-port/{id}", a.asHost(func(w http.ResponseWriter, r *http.Request, host string) error {
		return done(w, a.claims.RemoveHealthPort(r.Context(), host, r.PathValue("id")))
	}))
}

// asHost authenticates the request's client certificate and runs h for
// its host; an error h returns is answered.
func (a *API) asHost(h func(w http.ResponseWriter, r *http.Request, hostID string) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, hostID, err := a.svc.Authenticate(r.Context(), peer(r))
		if err == nil {
			err = h(w, r, hostID)
		}
		if err != nil {
			a.fail(w, r, err)
		}
	}
}

// done answers a write without a body, or returns its error.
func done(w http.ResponseWriter, err error) error {
	if err == nil {
		w.WriteHeader(http.StatusNoContent)
	}
	return err
}
