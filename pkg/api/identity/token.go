package identity

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/nagare/nagare/pkg/identity"
)

// Tokens: POST, GET, HEAD and DELETE /v3/auth/tokens, and the catalog.

const timeFormat = "2006-01-02T15:04:05.000000Z"

var defaultDomain = map[string]any{"id": identity.DefaultDomainID, "name": identity.DefaultDomainName}

type nameRef struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Domain *struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	} `json:"domain"`
}

func (n *nameRef) inDefaultDomain() bool {
	return n.Domain == nil || identity.IsDefaultDomain(n.Domain.ID, n.Domain.Name)
}

type authRequest struct {
	Identity struct {
		Methods  []string `json:"methods"`
		Password *struct {
			User struct {
				nameRef
				Password string `json:"password"`
			} `json:"user"`
		} `json:"password"`
		Token *struct {
			ID string `json:"id"`
		} `json:"token"`
	} `json:"identity"`
	Scope json.RawMessage `json:"scope"`
}

// issue is POST /v3/auth/tokens: password authentication (or a token
// rescoped to a project), answering 201 with X-Subject-Token.
func (a *API) issue(w http.ResponseWriter, r *http.Request) {
	var req authRequest
	if !decode(w, r, "auth", &req) {
		return
	}
	var scope struct {
		Project *nameRef `json:"project"`
		Domain  *nameRef `json:"domain"`
		System  any      `json:"system"`
	}
	unscoped := len(req.Scope) == 0 || string(req.Scope) == `"unscoped"`
	if !unscoped {
		if err := json.Unmarshal(req.Scope, &scope); err != nil {
			badRequest(w, "Invalid input for field 'scope': "+err.Error())
			return
		}
		if scope.Project == nil {
			// Domain and system scopes carry no project; Nagare's policy has
			// nothing they would grant beyond an unscoped token.
			Unauthorized(w, a.AuthURL(r))
			return
		}
		if !scope.Project.inDefaultDomain() {
			Unauthorized(w, a.AuthURL(r))
			return
		}
	}
	pid, pname := "", ""
	if scope.Project != nil {
		pid, pname = scope.Project.ID, scope.Project.Name
	}
	var (
		tok string
		c   *identity.Context
		err error
	)
	id := req.Identity
	switch {
	case slices.Contains(id.Methods, "password") && id.Password != nil:
		u := id.Password.User
		if !u.inDefaultDomain() || (u.ID == "" && u.Name == "") {
			Unauthorized(w, a.AuthURL(r))
			return
		}
		tok, c, err = a.svc.Login(r.Context(), identity.PasswordLogin{Source: sourceAddr(r), UserID: u.ID, UserName: u.Name,
			Password: u.Password, ProjectID: pid, ProjectName: pname, Scoped: !unscoped})
	case slices.Contains(id.Methods, "token") && id.Token != nil:
		tok, c, err = a.svc.Rescope(r.Context(), id.Token.ID, pid, pname)
	default:
		badRequest(w, "Expecting to find identity methods password or token.")
		return
	}
	if err != nil {
		fail(w, err) // a refused login is 401, without WWW-Authenticate
		return
	}
	w.Header().Set("X-Subject-Token", tok)
	writeJSON(w, http.StatusCreated, map[string]any{"token": a.tokenBody(r, c, r.URL.Query().Has("nocatalog"))})
}

// sourceAddr is the client's address as the lockout counts it: the peer
// of the connection (a proxy in front of the server is one source).
func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (a *API) tokenBody(r *http.Request, c *identity.Context, nocatalog bool) map[string]any {
	issued, methods := c.IssuedAt, c.Methods
	if issued.IsZero() {
		issued = time.Now()
	}
	if methods == nil {
		methods = []string{"password"}
	}
	t := map[string]any{
		"methods":    methods,
		"user":       map[string]any{"id": c.UserID, "name": c.UserName, "domain": defaultDomain, "password_expires_at": nil},
		"audit_ids":  []string{c.AuditID},
		"expires_at": c.ExpiresAt.UTC().Format(timeFormat),
		"issued_at":  issued.UTC().Format(timeFormat),
	}
	if c.ProjectID != "" {
		t["project"] = map[string]any{"id": c.ProjectID, "name": c.ProjectName, "domain": defaultDomain}
		t["is_domain"] = false
		roles := make([]map[string]string, len(c.Roles))
		for i, n := range c.Roles {
			roles[i] = map[string]string{"id": identity.APIID(identity.RoleID(n)), "name": n}
		}
		t["roles"] = roles
		if !nocatalog {
			t["catalog"] = a.catalog(r)
		}
	}
	return t
}

// catalog lists this server as the network endpoint and the identity
// endpoint, in every interface (clients default to public; Nova uses
// internal).
func (a *API) catalog(r *http.Request) []map[string]any {
	base := a.BaseURL(r)
	svc := func(typ, name, url string) map[string]any {
		var eps []map[string]any
		for _, iface := range []string{"public", "internal", "admin"} {
			eps = append(eps, map[string]any{"id": identity.APIID(identity.DerivedID("endpoint", typ, iface)), "interface": iface,
				"region_id": a.Region, "region": a.Region, "url": url})
		}
		return map[string]any{"id": identity.APIID(identity.DerivedID("service", typ)), "type": typ, "name": name, "endpoints": eps}
	}
	return []map[string]any{svc("network", "neutron", base), svc("identity", "keystone", base+Prefix)}
}

// check is GET/HEAD /v3/auth/tokens: validate X-Subject-Token. Admins may
// check any token; a user its own.
func (a *API) check(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	subj := r.Header.Get("X-Subject-Token")
	sc, err := a.svc.CheckToken(r.Context(), c, subj)
	if err != nil {
		failSubject(w, err, subj)
		return
	}
	w.Header().Set("X-Subject-Token", subj)
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": a.tokenBody(r, sc, r.URL.Query().Has("nocatalog"))})
}

// failSubject answers a failed validation of X-Subject-Token: an invalid
// token is one Keystone cannot find.
func failSubject(w http.ResponseWriter, err error, subj string) {
	if errors.Is(err, identity.ErrInvalidToken) {
		writeError(w, http.StatusNotFound, "Could not find token: "+shorten(subj)+".")
		return
	}
	fail(w, err)
}

func shorten(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

// revoke is DELETE /v3/auth/tokens: revoke X-Subject-Token.
func (a *API) revoke(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	subj := r.Header.Get("X-Subject-Token")
	if err := a.svc.RevokeToken(r.Context(), c, subj); err != nil {
		failSubject(w, err, subj)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) catalogOf(w http.ResponseWriter, r *http.Request, c *identity.Context) {
	writeJSON(w, http.StatusOK, map[string]any{"catalog": a.catalog(r), "links": a.links(r)})
}
