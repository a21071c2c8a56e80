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

	apiidentity "github.com/nagare/nagare/pkg/api/identity"
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
	res []*resource
}

// New returns the API over a service.
func New(svc *neutron.Service, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	a := &API{svc: svc, log: log}
	a.res = a.resources()
	return a
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
	for _, res := range a.res {
		base := Prefix + "/" + res.urlPath()
		v2.HandleFunc("GET "+base, a.list(res))
		v2.HandleFunc("POST "+base, a.create(res))
		v2.HandleFunc("GET "+base+"/{id}", a.show(res))
		if res.update != nil {
			v2.HandleFunc("PUT "+base+"/{id}", a.update(res))
		}
		v2.HandleFunc("DELETE "+base+"/{id}", a.delete(res))
		if res.taggable {
			a.registerTags(v2, res)
		}
	}
	a.registerInterfaces(v2)
	a.registerForwardings(v2)
	a.registerQuotas(v2)
	a.registerPoolActions(v2)
	a.registerAddressGroupActions(v2)
	a.registerQoS(v2)
	a.registerAvailability(v2)
	a.registerTrunkActions(v2)
	a.registerBGP(v2)
	a.registerBGPVPNAssociations(v2)
	a.registerFirewallActions(v2)
	v2.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, notFound())
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

func baseURL(r *http.Request) string { return apiidentity.RequestBaseURL(r) }

func (a *API) versions(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"versions": []any{map[string]any{
		"id": "v2.0", "status": "CURRENT", "links": []map[string]string{{"href": baseURL(r) + Prefix + "/", "rel": "self"}},
	}}})
}

func (a *API) resourcesDoc(w http.ResponseWriter, r *http.Request) {
	var out []map[string]any
	for _, res := range a.res {
		out = append(out, map[string]any{"name": res.singular, "collection": res.plural,
			"links": []map[string]string{{"href": baseURL(r) + Prefix + "/" + res.urlPath(), "rel": "self"}}})
	}
	writeJSON(w, http.StatusOK, map[string]any{"resources": out})
}

func caller(r *http.Request) *identity.Context { return identity.FromContext(r.Context()) }

// readJSON reads a request body of at most 1 MiB that is a JSON object.
func readJSON(r *http.Request) (map[string]json.RawMessage, error) {
	raw, err := io.ReadAll(io.LimitReader(r.Body, 1<<20+1))
	if err != nil {
		return nil, neutron.HTTPBadRequest("Cannot read the request body: %v", err)
	}
	if len(raw) > 1<<20 {
		return nil, errTooLarge
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		return nil, malformed()
	}
	return doc, nil
}

// readBody reads {"<key>": {...}} from a request.
func readBody(r *http.Request, key string) (Body, error) {
	bs, _, err := readBodies(r, key, key+"s", false)
	if err != nil {
		return nil, err
	}
	return bs[0], nil
}

// readBodies reads {"<key>": {...}}, or {"<plural>": [{...}, ...]} (a
// bulk create) when bulk allows it.
func readBodies(r *http.Request, key, plural string, bulk bool) ([]Body, bool, error) {
	doc, err := readJSON(r)
	if err != nil {
		return nil, false, err
	}
	if inner, ok := doc[plural]; ok && plural != key {
		if !bulk {
			return nil, false, neutron.HTTPBadRequest("Bulk operation not supported")
		}
		var bs []Body
		if err := json.Unmarshal(inner, &bs); err != nil {
			return nil, false, neutron.HTTPBadRequest("Invalid input for %s: expected a list of JSON objects", plural)
		}
		if len(bs) == 0 {
			return nil, false, neutron.HTTPBadRequest("Resources required")
		}
		for _, b := range bs {
			if b == nil {
				return nil, false, neutron.HTTPBadRequest("Invalid input for %s: expected a list of JSON objects", plural)
			}
		}
		return bs, true, nil
	}
	inner, ok := doc[key]
	if !ok {
		return nil, false, neutron.HTTPBadRequest("Unable to find '%s' in request body", key)
	}
	var b Body
	if err := json.Unmarshal(inner, &b); err != nil || b == nil {
		return nil, false, neutron.HTTPBadRequest("Invalid input for %s: expected a JSON object", key)
	}
	return []Body{b}, false, nil
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
			return 0, neutron.HTTPBadRequest("If-Match header %q is not of the form revision_number=<integer>", part)
		}
		if rev != 0 && n != rev {
			return 0, neutron.HTTPBadRequest("If-Match names two revisions")
		}
		rev = n
	}
	if rev == 0 {
		rev = -1 // revision_number=0 never matches: revisions start at 1
	}
	return rev, nil
}

// read runs fn with a viewer over one snapshot, for the caller of r.
func (a *API) read(ctx context.Context, c *identity.Context, fn func(v *viewer) error) error {
	return a.svc.Read(ctx, c, func(rd *neutron.Reader) error { return fn(newViewer(rd)) })
}

func (a *API) list(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := caller(r)
		lq, err := parseList(r, res.attrs, c)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		var items []map[string]any
		var all []model.Object
		if res.listAll != nil {
			if all, err = res.listAll(r.Context(), c); err != nil {
				a.fail(w, r, err)
				return
			}
		}
		err = a.read(r.Context(), c, func(v *viewer) error {
			if res.listAll != nil {
				items = make([]map[string]any, 0, len(all))
				for _, o := range all {
					if m := res.view(v, o); lq.matches(m) {
						items = append(items, m)
					}
				}
				return nil
			}
			nf, nv := "", ""
			for _, f := range res.narrow {
				if vs := lq.filters[f]; len(vs) == 1 && model.IsUUID(vs[0]) {
					nf, nv = f, vs[0]
					break
				}
			}
			if res.kind == neutron.NetworkKind {
				if err := v.LoadSubnets(); err != nil {
					return err
				}
			}
			objs, err := v.List(res.kind, nf, nv)
			if err != nil {
				return err
			}
			items = make([]map[string]any, 0, len(objs))
			for _, o := range objs {
				if m := res.view(v, o); lq.matches(m) {
					items = append(items, m)
				}
			}
			return nil
		})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.writeCollection(w, r, res.plural, items, lq, res.kind)
	}
}

func (a *API) writeCollection(w http.ResponseWriter, r *http.Request, plural string, items []map[string]any, lq *listQuery, k *model.Kind) {
	page, links, err := lq.page(r, items)
	if errors.Is(err, errMarker) {
		if k == nil {
			a.fail(w, r, neutron.NewError(neutron.NotFound, "NotFound", "Marker %s could not be found.", lq.marker))
			return
		}
		a.fail(w, r, neutron.NotFoundError(k, lq.marker))
		return
	}
	// Streamed item by item through one small buffer: a 10,000-port list
	// is ~8 MB that need never be in memory at once.
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, 0, 4096)
	buf = append(appendString(append(buf, '{'), plural), ':', '[')
	var keys []string // the last item's, sorted: the items of a list mostly share them
	for i, m := range page {
		if i > 0 {
			buf = append(buf, ',')
		}
		m = project(m, lq.fields)
		if !hasKeys(m, keys) {
			keys = sortedKeys(m)
		}
		buf = appendObjectKeys(buf, m, keys, appendJSON)
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

func (a *API) show(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var m map[string]any
		var one model.Object
		if res.getOne != nil {
			var err error
			if one, err = res.getOne(r.Context(), caller(r), pathID(r, "id")); err != nil {
				a.fail(w, r, err)
				return
			}
		}
		err := a.read(r.Context(), caller(r), func(v *viewer) error {
			o, err := one, error(nil)
			if one == nil {
				o, err = v.Get(res.kind, pathID(r, "id"))
			}
			if err != nil {
				return err
			}
			m = project(res.view(v, o), fields(r))
			return nil
		})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{res.singular: m})
	}
}

func (a *API) create(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := caller(r)
		bs, bulk, err := readBodies(r, res.singular, res.plural, res.bulk)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		crs := make([]*neutron.Creation, len(bs))
		for i, b := range bs {
			if err := res.attrs.check(b, true, c, res.singular); err != nil {
				a.fail(w, r, err)
				return
			}
			if crs[i], err = res.prepare(c, b); err != nil {
				a.fail(w, r, err)
				return
			}
		}
		objs, err := a.svc.CreateBulk(r.Context(), crs)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if !bulk {
			a.respondWith(w, r, res, objs[0], http.StatusCreated)
			return
		}
		var items []map[string]any
		err = a.read(r.Context(), c, func(v *viewer) error {
			for _, o := range objs {
				items = append(items, res.view(v, o))
			}
			return nil
		})
		a.reply(w, r, err, http.StatusCreated, map[string]any{res.plural: items})
	}
}

// respondWith renders the object a write returned (rather than reading it
// again).
func (a *API) respondWith(w http.ResponseWriter, r *http.Request, res *resource, o model.Object, status int) {
	var m map[string]any
	err := a.read(r.Context(), caller(r), func(v *viewer) error {
		m = res.view(v, o)
		return nil
	})
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, status, map[string]any{res.singular: m})
}

func (a *API) update(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := caller(r)
		rev, err := ifMatch(r)
		var b Body
		if err == nil {
			b, err = readBody(r, res.singular)
		}
		if err == nil {
			err = res.attrs.check(b, false, c, res.singular)
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		o, err := res.update(r.Context(), c, pathID(r, "id"), b, rev)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.respondWith(w, r, res, o, http.StatusOK)
	}
}

func (a *API) delete(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rev, err := ifMatch(r)
		if err == nil {
			err = res.delete(r.Context(), caller(r), pathID(r, "id"), rev)
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// pathID reads an id from the URL; ids are stored lower case.
func pathID(r *http.Request, name string) string { return strings.ToLower(r.PathValue(name)) }

// fields are the attributes a show asks for (all when none).
func fields(r *http.Request) []string { return nonEmpty(r.URL.Query()["fields"]) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	if m, ok := v.(map[string]any); ok {
		writeDoc(w, status, m)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
