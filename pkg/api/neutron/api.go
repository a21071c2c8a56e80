// Package neutron serves the OpenStack Networking API v2.0 at /v2.0: version
// discovery, the resources of package neutron with Neutron's conventions
// (filters on any attribute, fields, sorting, marker/limit pagination with
// links, tags, revision_number with If-Match, the NeutronError body) and the
// extensions list. It only translates HTTP: validation, policy and the
// one-transaction translation to the native topology live in pkg/neutron.
package neutron

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
)

// Prefix is where the API's version lives.
const Prefix = "/v2.0"

// API is the Neutron API.
type API struct {
	svc *neutron.Service
	log *slog.Logger
}

// New returns the API over a service.
func New(svc *neutron.Service, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	return &API{svc: svc, log: log}
}

// handlers are the write operations of one resource.
type handlers struct {
	res    *neutron.Resource
	create func(context.Context, *identity.Context, neutron.Body) (model.Object, error)
	update func(context.Context, *identity.Context, string, neutron.Body, int64) (model.Object, error)
	delete func(context.Context, *identity.Context, string, int64) error
	// narrow are filters the store answers from its reverse index.
	narrow []string
}

func wrapCreate[T model.Object](f func(context.Context, *identity.Context, neutron.Body) (T, error)) func(context.Context, *identity.Context, neutron.Body) (model.Object, error) {
	return func(ctx context.Context, c *identity.Context, b neutron.Body) (model.Object, error) {
		return f(ctx, c, b)
	}
}

func wrapUpdate[T model.Object](f func(context.Context, *identity.Context, string, neutron.Body, int64) (T, error)) func(context.Context, *identity.Context, string, neutron.Body, int64) (model.Object, error) {
	return func(ctx context.Context, c *identity.Context, id string, b neutron.Body, rev int64) (model.Object, error) {
		return f(ctx, c, id, b, rev)
	}
}

func (a *API) resources() []handlers {
	s := a.svc
	return []handlers{
		{neutron.Networks, wrapCreate(s.CreateNetwork), wrapUpdate(s.UpdateNetwork), s.DeleteNetwork, nil},
		{neutron.Subnets, wrapCreate(s.CreateSubnet), wrapUpdate(s.UpdateSubnet), s.DeleteSubnet, []string{"network_id"}},
		{neutron.Ports, wrapCreate(s.CreatePort), wrapUpdate(s.UpdatePort), s.DeletePort, []string{"network_id"}},
		{neutron.Routers, wrapCreate(s.CreateRouter), wrapUpdate(s.UpdateRouter), s.DeleteRouter, nil},
		{neutron.FloatingIPs, wrapCreate(s.CreateFloatingIP), wrapUpdate(s.UpdateFloatingIP), s.DeleteFloatingIP, []string{"port_id", "router_id", "floating_network_id"}},
		{neutron.SecurityGroups, wrapCreate(s.CreateSecurityGroup), wrapUpdate(s.UpdateSecurityGroup), s.DeleteSecurityGroup, nil},
		{neutron.SecurityGroupRules, wrapCreate(s.CreateSecurityGroupRule), nil, s.DeleteSecurityGroupRule, []string{"security_group_id"}},
	}
}

// Register adds the routes to mux. GET / (version discovery) is open, as
// in Neutron; everything under /v2.0 goes through auth (identity's
// middleware, or NoAuth).
func (a *API) Register(mux *http.ServeMux, auth func(http.Handler) http.Handler) {
	mux.HandleFunc("GET /{$}", a.versions)
	v2 := http.NewServeMux()
	v2.HandleFunc("GET "+Prefix, a.resourcesDoc)
	v2.HandleFunc("GET "+Prefix+"/{$}", a.resourcesDoc)
	v2.HandleFunc("GET "+Prefix+"/extensions", a.extensions)
	v2.HandleFunc("GET "+Prefix+"/extensions/{alias}", a.extension)
	for _, h := range a.resources() {
		base := Prefix + "/" + h.res.URLPath()
		v2.HandleFunc("GET "+base, a.list(h))
		v2.HandleFunc("POST "+base, a.create(h))
		v2.HandleFunc("GET "+base+"/{id}", a.show(h))
		if h.update != nil {
			v2.HandleFunc("PUT "+base+"/{id}", a.update(h))
		}
		v2.HandleFunc("DELETE "+base+"/{id}", a.delete(h))
	}
	for _, r := range neutron.Taggable {
		base := Prefix + "/" + r.URLPath() + "/{id}/tags"
		v2.HandleFunc("GET "+base, a.listTags(r))
		v2.HandleFunc("PUT "+base, a.replaceTags(r))
		v2.HandleFunc("DELETE "+base, a.deleteTags(r))
		v2.HandleFunc("GET "+base+"/{tag}", a.checkTag(r))
		v2.HandleFunc("PUT "+base+"/{tag}", a.addTag(r))
		v2.HandleFunc("DELETE "+base+"/{tag}", a.deleteTag(r))
	}
	v2.HandleFunc("PUT "+Prefix+"/routers/{id}/add_router_interface", a.routerInterface(true))
	v2.HandleFunc("PUT "+Prefix+"/routers/{id}/remove_router_interface", a.routerInterface(false))
	pf := Prefix + "/floatingips/{fip}/port_forwardings"
	v2.HandleFunc("GET "+pf, a.listForwardings)
	v2.HandleFunc("POST "+pf, a.createForwarding)
	v2.HandleFunc("GET "+pf+"/{id}", a.showForwarding)
	v2.HandleFunc("PUT "+pf+"/{id}", a.updateForwarding)
	v2.HandleFunc("DELETE "+pf+"/{id}", a.deleteForwarding)
	a.registerQuotas(v2)
	v2.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &neutron.Error{Status: 404, Type: "HTTPNotFound", Message: "The resource could not be found."})
	})
	h := auth(stripJSON(v2))
	mux.Handle(Prefix, h)
	mux.Handle(Prefix+"/", h)
}

// stripJSON accepts the ".json" suffix older clients put on paths.
func stripJSON(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p, ok := strings.CutSuffix(r.URL.Path, ".json"); ok {
			r2 := r.Clone(r.Context())
			r2.URL.Path = p
			r2.URL.RawPath = ""
			r = r2
		}
		h.ServeHTTP(w, r)
	})
}

func baseURL(r *http.Request) string { return identity.RequestBaseURL(r) }

func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{
		"id": "v2.0", "status": "CURRENT", "links": []map[string]string{{"href": baseURL(r) + Prefix + "/", "rel": "self"}},
	}}})
}

func (a *API) resourcesDoc(w http.ResponseWriter, r *http.Request) {
	var out []map[string]any
	for _, h := range a.resources() {
		out = append(out, map[string]any{"name": h.res.Singular, "collection": h.res.Plural,
			"links": []map[string]string{{"href": baseURL(r) + Prefix + "/" + h.res.URLPath(), "rel": "self"}}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"resources": out})
}

func caller(r *http.Request) *identity.Context { return identity.FromContext(r.Context()) }

// readBody reads {"<key>": {...}} from a request.
func readBody(r *http.Request, key string) (neutron.Body, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return nil, badRequest("Cannot read the request body: %v", err)
	}
	if len(raw) > 1<<20 {
		return nil, &neutron.Error{Status: http.StatusRequestEntityTooLarge, Type: "HTTPRequestEntityTooLarge", Message: "Request is too large."}
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		return nil, &neutron.Error{Status: 400, Type: "MalformedRequestBody", Message: "Malformed request body: The request body is not a JSON object."}
	}
	inner, ok := doc[key]
	if !ok {
		if _, bulk := doc[key+"s"]; bulk {
			return nil, badRequest("Bulk operation is not supported: create one %s per request", key)
		}
		return nil, badRequest("Unable to find '%s' in request body", key)
	}
	var b neutron.Body
	if err := json.Unmarshal(inner, &b); err != nil || b == nil {
		return nil, badRequest("Invalid input for %s: expected a JSON object", key)
	}
	return b, nil
}

func badRequest(format string, args ...any) *neutron.Error {
	return &neutron.Error{Status: 400, Type: "HTTPBadRequest", Message: sprintf(format, args...)}
}

// ifMatch reads the revision_number compare-and-swap of If-Match.
func ifMatch(r *http.Request) (int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" {
		return 0, nil
	}
	var rev int64
	for _, part := range strings.Split(h, ",") {
		part = strings.Trim(strings.TrimSpace(part), `"`)
		v, ok := strings.CutPrefix(part, "revision_number=")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || err != nil || n < 0 {
			return 0, badRequest("If-Match header %q is not of the form revision_number=<integer>", part)
		}
		if rev != 0 && n != rev {
			return 0, badRequest("If-Match names two revisions")
		}
		rev = n
	}
	if rev == 0 {
		rev = -1 // revision_number=0 never matches: revisions start at 1
	}
	return rev, nil
}

func (a *API) list(h handlers) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := caller(r)
		lq, err := parseList(r, h.res, c)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		var items []map[string]any
		err = a.svc.Read(r.Context(), c, func(v *neutron.Viewer) error {
			nf, nv := "", ""
			for _, f := range h.narrow {
				if vs := lq.filters[f]; len(vs) == 1 && model.IsUUID(vs[0]) {
					nf, nv = f, vs[0]
					break
				}
			}
			if h.res == neutron.Networks {
				if err := v.LoadSubnets(); err != nil {
					return err
				}
			}
			objs, err := v.List(h.res, nf, nv)
			if err != nil {
				return err
			}
			items = make([]map[string]any, 0, len(objs))
			for _, o := range objs {
				if m := v.View(o); lq.matches(m) {
					items = append(items, m)
				}
			}
			return nil
		})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.writeCollection(w, r, h.res.Plural, items, lq, h.res)
	}
}

func (a *API) writeCollection(w http.ResponseWriter, r *http.Request, plural string, items []map[string]any, lq *listQuery, res *neutron.Resource) {
	page, links, err := lq.page(r, items, plural)
	if errors.Is(err, errMarker) {
		a.fail(w, r, res.NotFound(lq.marker))
		return
	}
	// Streamed item by item through one small buffer: a 10,000-port list
	// is ~8 MB that need never be in memory at once.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, 0, 4096)
	buf = append(appendString(append(buf, '{'), plural), ':', '[')
	for i, m := range page {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendJSON(buf, project(m, lq.fields))
		if len(buf) > 32<<10 {
			_, _ = bw.Write(buf)
			buf = buf[:0]
		}
	}
	buf = append(buf, ']')
	if len(links) > 0 {
		buf = append(appendString(append(buf, ','), plural+"_links"), ':')
		buf = appendJSON(buf, links)
	}
	_, _ = bw.Write(append(buf, '}', '\n'))
	_ = bw.Flush()
}

// render re-reads an object in a viewer and renders it for the caller.
func (a *API) render(ctx context.Context, c *identity.Context, res *neutron.Resource, id string, fields []string) (map[string]any, error) {
	var m map[string]any
	err := a.svc.Read(ctx, c, func(v *neutron.Viewer) error {
		o, err := v.Get(res, id)
		if err != nil {
			return err
		}
		m = project(v.View(o), fields)
		return nil
	})
	return m, err
}

func (a *API) show(h handlers) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m, err := a.render(r.Context(), caller(r), h.res, pathID(r, "id"), nonEmpty(r.URL.Query()["fields"]))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{h.res.Singular: m})
	}
}

func (a *API) create(h handlers) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := readBody(r, h.res.Singular)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		c := caller(r)
		o, err := h.create(r.Context(), c, b)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.respondWith(w, r, c, h.res, o, http.StatusCreated)
	}
}

// respondWith renders the object a write returned (rather than reading it
// again).
func (a *API) respondWith(w http.ResponseWriter, r *http.Request, c *identity.Context, res *neutron.Resource, o model.Object, status int) {
	var m map[string]any
	err := a.svc.Read(r.Context(), c, func(v *neutron.Viewer) error {
		m = v.View(o)
		return nil
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, status, map[string]any{res.Singular: m})
}

func (a *API) update(h handlers) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rev, err := ifMatch(r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		b, err := readBody(r, h.res.Singular)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		c := caller(r)
		o, err := h.update(r.Context(), c, pathID(r, "id"), b, rev)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.respondWith(w, r, c, h.res, o, http.StatusOK)
	}
}

func (a *API) delete(h handlers) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rev, err := ifMatch(r)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if err := h.delete(r.Context(), caller(r), pathID(r, "id"), rev); err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (a *API) routerInterface(add bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		var b neutron.Body
		if err != nil || json.Unmarshal(raw, &b) != nil || b == nil {
			a.fail(w, r, &neutron.Error{Status: 400, Type: "MalformedRequestBody", Message: "Malformed request body: The request body is not a JSON object."})
			return
		}
		var info *neutron.InterfaceInfo
		if add {
			info, err = a.svc.AddInterface(r.Context(), caller(r), pathID(r, "id"), b)
		} else {
			info, err = a.svc.RemoveInterface(r.Context(), caller(r), pathID(r, "id"), b)
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	}
}

// pathID reads an id from the URL; ids are stored lower case.
func pathID(r *http.Request, name string) string { return strings.ToLower(r.PathValue(name)) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	if m, ok := v.(map[string]any); ok {
		writeDoc(w, status, m)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes the NeutronError document.
func writeError(w http.ResponseWriter, e *neutron.Error) {
	writeJSON(w, e.Status, map[string]any{"NeutronError": map[string]string{"type": e.Type, "message": e.Message, "detail": e.Detail}})
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	e := neutron.AsError(err)
	if e.Status >= 500 {
		a.log.Error("neutron request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, e)
}
