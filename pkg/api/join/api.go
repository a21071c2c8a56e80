// Package join is the HTTP side of agent identity (package join is the
// domain) and of what a joined agent asks the server to change in the
// topology for it (package hostclaim is that domain): where an agent
// fetches the CA, joins with a token and a CSR, renews with its current
// certificate and makes its claims with it, and where an administrator
// creates join tokens and revokes hosts.
//
//	GET    /api/v1/join/ca                         the CA (PEM); agents check it against their token's pin
//	POST   /api/v1/join                            {"token", "csr", "addresses", "physical_networks"} → certificate
//	POST   /api/v1/join/renew                      {"csr"} with the current client certificate → certificate
//	POST   /api/v1/host-claims/host                hostclaim.HostInfo, with the client certificate
//	POST   /api/v1/host-claims/uplink              hostclaim.Uplink, with the client certificate
//	POST   /api/v1/host-claims/health-port         {"router_id"} → {"port_id"}, with the client certificate
//	DELETE /api/v1/host-claims/health-port/{id}    with the client certificate
//	POST   /api/v1/join-tokens                     {"ttl", "uses", "description"} → {"token"} (admin)
//	POST   /api/v1/hosts/{id}/revoke               (admin)
//
// Both halves serve agents, over the same TLS client authentication and
// error document, and share this package's client (client.go). Errors
// are the native API's document {"error": {"code", "type", "message"}}.
package join

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"time"

	"github.com/nagare/nagare/pkg/hostclaim"
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
	Certificate string `json:"certificate"`
	CA          string `json:"ca"`
	EtcdCA      string `json:"etcd_ca,omitempty"` // an external cluster's CA, when another

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
	svc    *join.Service
	claims hostclaim.Claims
	ca     []byte
	log    *slog.Logger
}

// New returns the API over svc and claims; caPEM is what GET
// /api/v1/join/ca serves.
func New(svc *join.Service, claims hostclaim.Claims, caPEM []byte, log *slog.Logger) *API {
	return &API{svc: svc, claims: claims, ca: caPEM, log: log}
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
	mux.HandleFunc("POST /api/v1/join", body(a, http.StatusCreated, a.join))
	mux.HandleFunc("POST /api/v1/join/renew", body(a, http.StatusCreated, a.renew))
	a.registerClaims(mux)
	mux.Handle("POST /api/v1/join-tokens", admin(body(a, http.StatusCreated, a.createToken)))
	mux.Handle("POST /api/v1/hosts/{id}/revoke", admin(http.HandlerFunc(a.revoke)))
}

// body is a handler of a JSON request body of type Q: do's result is
// answered with status (no body for a nil result: 204), its error with
// fail.
func body[Q any](a *API, status int, do func(r *http.Request, q Q) (any, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var q Q
		if !decode(w, r, &q) {
			return
		}
		out, err := do(r, q)
		switch {
		case err != nil:
			a.fail(w, r, err)
		case out == nil:
			w.WriteHeader(http.StatusNoContent)
		default:
			writeJSON(w, status, out)
		}
	}
}

func (a *API) join(r *http.Request, req JoinRequest) (any, error) {
	is, err := a.svc.Join(r.Context(), join.Request{Token: req.Token, CSR: []byte(req.CSR), Addresses: req.Addresses, PhysicalNetworks: req.PhysicalNetworks})
	if err != nil {
		return nil, err
	}
	return certificate(is, r), nil
}

func (a *API) renew(r *http.Request, req RenewRequest) (any, error) {
	is, err := a.svc.Renew(r.Context(), peer(r), []byte(req.CSR))
	if err != nil {
		return nil, err
	}
	return certificate(is, r), nil
}

// peer is the client certificate of the request, nil without one.
func peer(r *http.Request) *x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates[0]
}

func (a *API) createToken(r *http.Request, req TokenRequest) (any, error) {
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil {
		return nil, &join.Error{Class: join.BadRequest, Message: "ttl: " + err.Error()}
	}
	t, err := a.svc.CreateToken(r.Context(), ttl, req.Uses, req.Description)
	if err != nil {
		return nil, err
	}
	return map[string]string{"token": t.String()}, nil
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
	c := Certificate{Certificate: string(is.Certificate), CA: string(is.CA), EtcdCA: string(is.EtcdCA), HostID: is.HostID, NotAfter: is.NotAfter}
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

var claimStatuses = map[hostclaim.Class]int{
	hostclaim.BadRequest: http.StatusBadRequest,
	hostclaim.Forbidden:  http.StatusForbidden,
	hostclaim.NotFound:   http.StatusNotFound,
	hostclaim.Conflict:   http.StatusConflict,
}

// fail answers a refusal of either domain with its status, and anything
// else as the server's failure.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var je *join.Error
	var ce *hostclaim.Error
	var fe *model.FieldError
	var conflict *model.ConflictError
	st, msg := 0, ""
	switch {
	case errors.As(err, &je):
		st, msg = statuses[je.Class], je.Message
	case errors.As(err, &ce):
		st, msg = claimStatuses[ce.Class], ce.Message
	case errors.As(err, &fe):
		st, msg = http.StatusBadRequest, fe.Error()
	case errors.As(err, &conflict):
		st, msg = http.StatusConflict, conflict.Error()
	case errors.Is(err, model.ErrNotFound):
		st, msg = http.StatusNotFound, err.Error()
	}
	if st != 0 {
		a.log.Info("agent request refused", "path", r.URL.Path, "remote", r.RemoteAddr, "status", st, "reason", msg)
		writeError(w, st, http.StatusText(st), msg)
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
