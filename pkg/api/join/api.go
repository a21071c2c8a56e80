// Package join is the HTTP side of agent identity (package join is the
// domain): where an agent fetches the CA, joins with a token and a CSR,
// and renews with its current certificate, and where an administrator
// creates join tokens and revokes hosts.
//
//	GET  /api/v1/join/ca            the CA (PEM); agents check it against their token's pin
//	POST /api/v1/join               {"token", "csr", "addresses", "physical_networks"} → certificate
//	POST /api/v1/join/renew         {"csr"} with the current client certificate → certificate
//	POST /api/v1/join-tokens        {"ttl", "uses", "description"} → {"token"} (admin)
//	POST /api/v1/hosts/{id}/revoke  (admin)
//
// Errors are the native API's document {"error": {"code", "type",
// "message"}}.
package join

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/nagare/nagare/pkg/join"
	"github.com/nagare/nagare/pkg/model"
)

// JoinRequest is the body of POST /api/v1/join.
type JoinRequest struct {
	Token            string       `json:"token"`
	CSR              string       `json:"csr"`
	Addresses        []netip.Addr `json:"addresses,omitempty"`
	PhysicalNetworks []string     `json:"physical_networks,omitempty"`
}

// RenewRequest is the body of POST /api/v1/join/renew.
type RenewRequest struct {
	CSR string `json:"csr"`
}

// Certificate is the answer to a join or a renewal.
type Certificate struct {
	Certificate   string    `json:"certificate"`
	CA            string    `json:"ca"`
	HostID        string    `json:"host_id"`
	EtcdEndpoints []string  `json:"etcd_endpoints"`
	NotAfter      time.Time `json:"not_after"`
}

// TokenRequest is the body of POST /api/v1/join-tokens.
type TokenRequest struct {
	TTL         string `json:"ttl"` // a Go duration, "1h"
	Uses        int    `json:"uses,omitempty"`
	Description string `json:"description,omitempty"`
}

// API serves the routes above.
type API struct {
	svc *join.Service
	ca  []byte
	log *slog.Logger
}

// New returns the API over svc; caPEM is what GET /api/v1/join/ca serves.
func New(svc *join.Service, caPEM []byte, log *slog.Logger) *API {
	return &API{svc: svc, ca: caPEM, log: log}
}

// maxBody bounds request bodies: a CSR and a few addresses.
const maxBody = 64 << 10

// Register adds the public routes to mux and the administrator's behind
// admin (authentication and the admin role).
func (a *API) Register(mux *http.ServeMux, admin func(http.Handler) http.Handler) {
	mux.HandleFunc("GET /api/v1/join/ca", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(a.ca)
	})
	mux.HandleFunc("POST /api/v1/join", a.join)
	mux.HandleFunc("POST /api/v1/join/renew", a.renew)
	mux.Handle("POST /api/v1/join-tokens", admin(http.HandlerFunc(a.createToken)))
	mux.Handle("POST /api/v1/hosts/{id}/revoke", admin(http.HandlerFunc(a.revoke)))
}

func (a *API) join(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if !decode(w, r, &req) {
		return
	}
	is, err := a.svc.Join(r.Context(), join.Request{Token: req.Token, CSR: []byte(req.CSR), Addresses: req.Addresses, PhysicalNetworks: req.PhysicalNetworks})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, certificate(is, r))
}

func (a *API) renew(w http.ResponseWriter, r *http.Request) {
	var req RenewRequest
	if !decode(w, r, &req) {
		return
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		a.fail(w, r, &join.Error{Class: join.Unauthorized, Message: "renewal needs the host's current client certificate (over TLS)"})
		return
	}
	is, err := a.svc.Renew(r.Context(), r.TLS.PeerCertificates[0], []byte(req.CSR))
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, certificate(is, r))
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	var req TokenRequest
	if !decode(w, r, &req) {
		return
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil {
		a.fail(w, r, &join.Error{Class: join.BadRequest, Message: "ttl: " + err.Error()})
		return
	}
	t, err := a.svc.CreateToken(r.Context(), ttl, req.Uses, req.Description)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"token": t.String()})
}

func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	if err := a.svc.Revoke(r.Context(), r.PathValue("id")); err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// certificate renders an issued certificate; etcd endpoints listening on
// a wildcard address are given with the host the agent reached this
// server at, which is the address it can reach etcd at too.
func certificate(is *join.Issued, r *http.Request) Certificate {
	c := Certificate{Certificate: string(is.Certificate), CA: string(is.CA), HostID: is.HostID, NotAfter: is.NotAfter}
	reqHost, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		reqHost = r.Host
	}
	for _, e := range is.Endpoints {
		u, err := url.Parse(e)
		if err == nil {
			if h := u.Hostname(); h == "" || net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified() {
				u.Host = net.JoinHostPort(reqHost, u.Port())
				e = u.String()
			}
		}
		c.EtcdEndpoints = append(c.EtcdEndpoints, e)
	}
	return c
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	d := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "BadRequest", "malformed JSON body: "+err.Error())
		return false
	}
	return true
}

var statuses = map[join.Class]int{
	join.BadRequest:   http.StatusBadRequest,
	join.Unauthorized: http.StatusUnauthorized,
	join.Forbidden:    http.StatusForbidden,
	join.Conflict:     http.StatusConflict,
	join.NotFound:     http.StatusNotFound,
	join.Unavailable:  http.StatusNotImplemented,
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var je *join.Error
	if errors.As(err, &je) {
		if st, ok := statuses[je.Class]; ok {
			a.log.Info("join request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "status", st, "reason", je.Message)
			writeError(w, st, http.StatusText(st), je.Message)
			return
		}
	}
	if errors.Is(err, model.ErrNotFound) {
		writeError(w, http.StatusNotFound, "NotFound", err.Error())
		return
	}
	a.log.Error("join request failed", "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, "InternalServerError", "the server failed: see its log")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type errorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, typ, msg string) {
	var b errorBody
	b.Error.Code, b.Error.Type, b.Error.Message = status, typ, msg
	writeJSON(w, status, b)
}
