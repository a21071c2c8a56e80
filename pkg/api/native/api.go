// Package native serves Nagare's native REST API at /api/v1: one generic set
// of handlers for every kind of the model, driven by the model's schema, plus
// the few operations that are not plain CRUD (port links, host bindings).
//
// The handlers only translate HTTP to store calls: every rule about what a
// valid write is lives in the model and the store, so the Neutron API and any
// other writer get the same answers.
package native

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// Store is what the API needs from the NSDB (implemented by nsdb.Store).
type Store interface {
	Create(ctx context.Context, o model.Object) (model.Object, error)
	Modify(ctx context.Context, k *model.Kind, id string, ifRevision int64, mutate func(model.Object) error) (model.Object, error)
	Remove(ctx context.Context, k *model.Kind, id string, ifRevision int64) error
	Get(ctx context.Context, k *model.Kind, id string) (model.Object, error)
	List(ctx context.Context, k *model.Kind, field, value string) ([]model.Object, int64, error)
	AliveHosts(ctx context.Context) (map[string]bool, error)
	MemberStatuses(ctx context.Context) (map[string]string, error)
	BGPStore
}

// maxBody bounds request bodies; the largest legitimate object is a few KB.
const maxBody = 1 << 20

// Prefix is where the API is mounted.
const Prefix = "/api/v1"

// API is the native REST API.
type API struct {
	store Store
	log   *slog.Logger
}

// New returns the API over a store.
func New(store Store, log *slog.Logger) *API {
	if log == nil {
		log = slog.Default()
	}
	return &API{store: store, log: log}
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	for _, k := range nativeKinds() {
		base := Prefix + "/" + k.Plural
		mux.HandleFunc("GET "+base, a.list(k, nil))
		mux.HandleFunc("POST "+base, a.create(k, nil))
		mux.HandleFunc("GET "+base+"/{id}", a.get(k))
		mux.HandleFunc("PUT "+base+"/{id}", a.update(k))
		mux.HandleFunc("PATCH "+base+"/{id}", a.update(k))
		mux.HandleFunc("DELETE "+base+"/{id}", a.delete(k))
		for _, pf := range k.ParentFields() {
			parent := model.KindByName(pf.Ref)
			nested := Prefix + "/" + parent.Plural + "/{pid}/" + k.Plural
			mux.HandleFunc("GET "+nested, a.list(k, pf))
			mux.HandleFunc("POST "+nested, a.create(k, pf))
		}
	}
	mux.HandleFunc("PUT "+Prefix+"/ports/{id}/link", a.link)
	mux.HandleFunc("DELETE "+Prefix+"/ports/{id}/link", a.unlink)
	mux.HandleFunc("GET "+Prefix+"/hosts/{id}/bindings", a.listBindings)
	mux.HandleFunc("POST "+Prefix+"/hosts/{id}/bindings", a.bind)
	mux.HandleFunc("DELETE "+Prefix+"/hosts/{id}/bindings/{iface}", a.unbind)
	mux.HandleFunc("GET "+Prefix+"/hosts/{id}/datapath", a.datapathStatus)
	mux.HandleFunc("GET "+Prefix+"/routers/{id}/nat-translations", a.natTranslations)
	mux.HandleFunc("POST "+Prefix+"/trace", a.trace)
	mux.HandleFunc("GET "+Prefix+"/openapi.json", a.openapi)
	mux.HandleFunc(Prefix+"/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &httpError{http.StatusNotFound, "NotFound", "", "no such resource: " + r.Method + " " + r.URL.Path})
	})
}

func (a *API) list(k *model.Kind, parent *model.Field) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		field, value, err := listFilter(k, r)
		if err != nil {
			writeError(w, err)
			return
		}
		if parent != nil {
			// The parent must exist: an empty list for a typo'd id would hide the mistake.
			pid := pathID(r, "pid")
			if _, err := a.store.Get(r.Context(), model.KindByName(parent.Ref), pid); err != nil {
				a.fail(w, r, err)
				return
			}
			if field != "" && field != parent.JSON {
				objs, err := a.listFiltered(r.Context(), k, parent.JSON, pid, field, value)
				if err == nil {
					objs, err = a.withLearned(r.Context(), k, objs, [2]string{parent.JSON, pid}, [2]string{field, value})
				}
				if err != nil {
					a.fail(w, r, err)
					return
				}
				a.writeObjects(w, r, k, objs)
				return
			}
			field, value = parent.JSON, pid
		}
		objs, _, err := a.store.List(r.Context(), k, field, value)
		if err == nil {
			objs, err = a.withLearned(r.Context(), k, objs, [2]string{field, value})
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.writeObjects(w, r, k, objs)
	}
}

// listFiltered applies a second filter in Go (the store filters on one field).
func (a *API) listFiltered(ctx context.Context, k *model.Kind, f1, v1, f2, v2 string) ([]model.Object, error) {
	objs, _, err := a.store.List(ctx, k, f1, v1)
	if err != nil {
		return nil, err
	}
	out := objs[:0]
	f := k.Field(f2)
	for _, o := range objs {
		if f.Text(o) == v2 {
			out = append(out, o)
		}
	}
	return out, nil
}

// listFilter reads the one optional ?field=value filter of a list request.
func listFilter(k *model.Kind, r *http.Request) (string, string, error) {
	q := r.URL.Query()
	if len(q) > 1 {
		return "", "", badField("query", "filter on one field at a time (got %d)", len(q))
	}
	for name, vals := range q {
		if f := k.Field(name); f == nil {
			return "", "", badField(name, "cannot filter %s by unknown field", k.Plural)
		} else if f.Secret {
			return "", "", badField(name, "cannot filter %s by a write-only field", k.Plural)
		}
		if len(vals) != 1 {
			return "", "", badField(name, "give one value to filter on")
		}
		return name, vals[0], nil
	}
	return "", "", nil
}

func (a *API) create(k *model.Kind, parent *model.Field) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			writeError(w, err)
			return
		}
		o := k.New()
		if err := model.Decode(k, body, o, true); err != nil {
			writeError(w, err)
			return
		}
		var pid string
		if parent != nil {
			pid = pathID(r, "pid")
			if v := parent.Text(o); v != "" && v != pid {
				writeError(w, badField(parent.JSON, "is %s but the URL names %s", v, pid))
				return
			}
			parent.Value(o).SetString(pid)
		}
		// The store checks that the parent exists in the commit itself
		// (one etcd round trip, not a read first and then the write).
		created, err := a.store.Create(r.Context(), o)
		var fe *model.FieldError
		if parent != nil && errors.As(err, &fe) && fe.Field == parent.JSON && fe.Missing {
			// The URL names the parent: a missing one is 404, not a bad field
			// (a parent that exists but does not fit stays a 400).
			err = &httpError{http.StatusNotFound, "NotFound", "", fe.Msg}
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.writeObject(w, r, http.StatusCreated, created)
	}
}

func (a *API) get(k *model.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		o, err := a.store.Get(r.Context(), k, pathID(r, "id"))
		if k == model.RouteKind && errors.Is(err, model.ErrNotFound) {
			if lr, lerr := a.learnedRoute(r.Context(), pathID(r, "id")); lerr != nil {
				err = lerr
			} else if lr != nil {
				o, err = lr, nil
			}
		}
		if err != nil {
			a.fail(w, r, err)
			return
		}
		a.writeObject(w, r, http.StatusOK, o)
	}
}

// update applies the fields present in the body onto the stored object (the
// Neutron convention, also used for PATCH). A revision, in the body or in
// If-Match, makes it a compare-and-swap.
func (a *API) update(k *model.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, err := readBody(r)
		if err != nil {
			writeError(w, err)
			return
		}
		rev, err := revisionOf(r, body)
		if err != nil {
			writeError(w, err)
			return
		}
		// Decode once into a scratch object so a malformed body fails before any read.
		if err := model.Decode(k, body, k.New(), false); err != nil {
			writeError(w, err)
			return
		}
		o, err := a.store.Modify(r.Context(), k, pathID(r, "id"), rev, func(o model.Object) error {
			return model.Decode(k, body, o, false)
		})
		if err != nil {
			a.fail(w, r, a.notStored(r.Context(), k, pathID(r, "id"), err))
			return
		}
		a.writeObject(w, r, http.StatusOK, o)
	}
}

func (a *API) delete(k *model.Kind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rev, err := revisionOf(r, nil)
		if err != nil {
			writeError(w, err)
			return
		}
		if err := a.store.Remove(r.Context(), k, pathID(r, "id"), rev); err != nil {
			a.fail(w, r, a.notStored(r.Context(), k, pathID(r, "id"), err))
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// revisionOf reads the compare-and-swap precondition from If-Match or the body.
func revisionOf(r *http.Request, body []byte) (int64, error) {
	var rev int64
	if h := strings.Trim(r.Header.Get("If-Match"), `"W/`); h != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(h, "revision_number="), 10, 64)
		if err != nil || n <= 0 {
			return 0, badField("If-Match", "%q is not a revision number", h)
		}
		rev = n
	}
	if len(body) > 0 {
		var b struct {
			Revision *json.Number `json:"revision"`
		}
		if json.Unmarshal(body, &b) == nil && b.Revision != nil {
			n, err := b.Revision.Int64()
			if err != nil || n < 0 {
				return 0, badField("revision", "%q is not a revision number", b.Revision.String())
			}
			if rev != 0 && n != rev {
				return 0, badField("revision", "body says %d but If-Match says %d", n, rev)
			}
			rev = n
		}
	}
	return rev, nil
}

func readBody(r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, badField("body", "cannot read request body: %v", err)
	}
	if len(body) > maxBody {
		return nil, badField("body", "request body is larger than %d bytes", maxBody)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return []byte("{}"), nil
	}
	return body, nil
}

// decorate fills derived fields before an object leaves the API, and
// blanks write-only ones.
func (a *API) decorate(ctx context.Context, k *model.Kind, objs []model.Object) error {
	for _, f := range k.Fields {
		if f.Secret {
			for _, o := range objs {
				f.Value(o).SetZero()
			}
		}
	}
	switch k {
	case model.HostKind:
		alive, err := a.store.AliveHosts(ctx)
		if err != nil {
			return err
		}
		for _, o := range objs {
			o.(*model.Host).Alive = alive[o.GetMeta().ID]
		}
	case model.PoolMemberKind:
		// The monitors' status; a member of a pool without a health
		// monitor that nobody wrote a status for shows no_monitor.
		status, err := a.store.MemberStatuses(ctx)
		if err != nil {
			return err
		}
		monitored := map[string]bool{}
		for _, o := range objs {
			m := o.(*model.PoolMember)
			if m.Status = status[m.ID]; m.Status != "" {
				continue
			}
			mon, ok := monitored[m.PoolID]
			if !ok {
				po, err := a.store.Get(ctx, model.PoolKind, m.PoolID)
				if err != nil && !errors.Is(err, model.ErrNotFound) {
					return err
				}
				mon = err == nil && po.(*model.Pool).HealthMonitorID != ""
				monitored[m.PoolID] = mon
			}
			if !mon {
				m.Status = model.MemberNoMonitor
			}
		}
	case model.BGPPeerKind:
		return a.decorateBGPPeers(ctx, objs)
	case model.RuleKind:
		chains := map[string]*model.Chain{}
		for _, o := range objs {
			r := o.(*model.Rule)
			c, ok := chains[r.ChainID]
			if !ok {
				co, err := a.store.Get(ctx, model.ChainKind, r.ChainID)
				if err != nil {
					return err
				}
				c = co.(*model.Chain)
				chains[r.ChainID] = c
			}
			r.Position = model.RulePosition(c, r.ID)
		}
	}
	return nil
}

func (a *API) writeObject(w http.ResponseWriter, r *http.Request, status int, o model.Object) {
	if err := a.decorate(r.Context(), model.KindOf(o), []model.Object{o}); err != nil {
		a.fail(w, r, err)
		return
	}
	w.Header().Set("ETag", strconv.FormatInt(o.GetMeta().Revision, 10))
	writeJSON(w, status, o)
}

func (a *API) writeObjects(w http.ResponseWriter, r *http.Request, k *model.Kind, objs []model.Object) {
	if err := a.decorate(r.Context(), k, objs); err != nil {
		a.fail(w, r, err)
		return
	}
	if objs == nil {
		objs = []model.Object{}
	}
	writeJSON(w, http.StatusOK, objs)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// httpError is an API error with its status and, when known, the field at fault.
type httpError struct {
	Status  int
	Type    string
	Field   string
	Message string
}

func (e *httpError) Error() string { return e.Message }

func badField(field, format string, args ...any) *httpError {
	return &httpError{http.StatusBadRequest, "BadRequest", field, field + ": " + fmt.Sprintf(format, args...)}
}

// ErrorBody is the JSON error document.
type ErrorBody struct {
	Error struct {
		Code    int    `json:"code"`
		Type    string `json:"type"`
		Field   string `json:"field,omitempty"`
		Message string `json:"message"`
	} `json:"error"`
}

// classify maps store and model errors to HTTP.
func classify(err error) *httpError {
	var he *httpError
	var fe *model.FieldError
	var ce *model.ConflictError
	switch {
	case errors.As(err, &he):
		return he
	case errors.As(err, &fe):
		return &httpError{http.StatusBadRequest, "BadRequest", fe.Field, fe.Error()}
	case errors.As(err, &ce), errors.Is(err, model.ErrConflict):
		return &httpError{http.StatusConflict, "Conflict", "", err.Error()}
	case errors.Is(err, model.ErrNotFound):
		return &httpError{http.StatusNotFound, "NotFound", "", err.Error()}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &httpError{http.StatusServiceUnavailable, "Unavailable", "", "the NSDB did not answer in time: " + err.Error()}
	}
	return &httpError{http.StatusInternalServerError, "InternalError", "", err.Error()}
}

func writeError(w http.ResponseWriter, err error) {
	he := classify(err)
	var b ErrorBody
	b.Error.Code, b.Error.Type, b.Error.Field, b.Error.Message = he.Status, he.Type, he.Field, he.Message
	writeJSON(w, he.Status, b)
}

func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	if he := classify(err); he.Status >= 500 {
		a.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, err)
}

// nativeKinds are the kinds this API serves: the virtual topology, without
// the internal kinds other packages keep in the NSDB (Neutron's objects,
// identity's users), which have their own APIs and policies.
func nativeKinds() []*model.Kind {
	var ks []*model.Kind
	for _, k := range model.Kinds() {
		if !k.Internal {
			ks = append(ks, k)
		}
	}
	return ks
}

// sortedKinds returns kinds by plural, for stable documents.
func sortedKinds() []*model.Kind {
	ks := nativeKinds()
	sort.Slice(ks, func(i, j int) bool { return ks[i].Plural < ks[j].Plural })
	return ks
}

// pathID reads an object id from the URL. UUIDs are stored lower-case;
// clients that print them upper-case still name the same object.
func pathID(r *http.Request, name string) string { return strings.ToLower(r.PathValue(name)) }
