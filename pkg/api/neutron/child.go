package neutron

import (
	"context"
	"net/http"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
)

// child is a collection under an object of another resource
// (/qos/policies/{parent}/bandwidth_limit_rules,
// /bgpvpn/bgpvpns/{parent}/network_associations): the same conventions
// as a top-level collection, with the parent's id from the URL.
type child struct {
	parent           string // the parent collection's URL path ("qos/policies")
	singular, plural string
	kind             *model.Kind // for the not-found error of a marker
	attrs            attrs
	view             func(model.Object) map[string]any
	list             func(ctx context.Context, c *identity.Context, parent string) ([]model.Object, error)
	get              func(ctx context.Context, c *identity.Context, parent, id string) (model.Object, error)
	create           func(ctx context.Context, c *identity.Context, parent string, b Body) (model.Object, error)
	update           func(ctx context.Context, c *identity.Context, parent, id string, b Body) (model.Object, error) // nil: no PUT
	delete           func(ctx context.Context, c *identity.Context, parent, id string) error
}

func (a *API) registerChild(mux *http.ServeMux, ch *child) {
	base := Prefix + "/" + ch.parent + "/{parent}/" + ch.plural
	mux.HandleFunc("GET "+base, func(w http.ResponseWriter, r *http.Request) {
		c := caller(r)
		lq, err := parseList(r, ch.attrs, c)
		if err != nil {
			a.fail(w, r, err)
			return
		}
		objs, err := ch.list(r.Context(), c, pathID(r, "parent"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		items := []map[string]any{}
		for _, o := range objs {
			if m := ch.view(o); lq.matches(m) {
				items = append(items, m)
			}
		}
		a.writeCollection(w, r, ch.plural, items, lq, ch.kind)
	})
	mux.HandleFunc("GET "+base+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		o, err := ch.get(r.Context(), caller(r), pathID(r, "parent"), pathID(r, "id"))
		a.replyChild(w, r, ch, o, err, http.StatusOK)
	})
	mux.HandleFunc("POST "+base, func(w http.ResponseWriter, r *http.Request) {
		c := caller(r)
		b, err := readBody(r, ch.singular)
		if err == nil {
			err = ch.attrs.check(b, true, c, ch.singular)
		}
		var o model.Object
		if err == nil {
			o, err = ch.create(r.Context(), c, pathID(r, "parent"), b)
		}
		a.replyChild(w, r, ch, o, err, http.StatusCreated)
	})
	if ch.update != nil {
		mux.HandleFunc("PUT "+base+"/{id}", func(w http.ResponseWriter, r *http.Request) {
			c := caller(r)
			b, err := readBody(r, ch.singular)
			if err == nil {
				err = ch.attrs.check(b, false, c, ch.singular)
			}
			var o model.Object
			if err == nil {
				o, err = ch.update(r.Context(), c, pathID(r, "parent"), pathID(r, "id"), b)
			}
			a.replyChild(w, r, ch, o, err, http.StatusOK)
		})
	}
	mux.HandleFunc("DELETE "+base+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		a.done(w, r, ch.delete(r.Context(), caller(r), pathID(r, "parent"), pathID(r, "id")), http.StatusNoContent)
	})
}

// replyChild answers one object of a child collection (with the fields
// asked for) or the error.
func (a *API) replyChild(w http.ResponseWriter, r *http.Request, ch *child, o model.Object, err error, status int) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, status, map[string]any{ch.singular: project(ch.view(o), fields(r))})
}

// objects adapts a typed list to a child's.
func objects[T model.Object](xs []T, err error) ([]model.Object, error) {
	out := make([]model.Object, len(xs))
	for i, x := range xs {
		out[i] = x
	}
	return out, err
}

// object adapts a typed result to a child's.
func object[T model.Object](x T, err error) (model.Object, error) {
	if err != nil {
		return nil, err
	}
	return x, nil
}

// action serves PUT /<collection>/{id}/<name>: read decodes the body, do
// performs the action and renders its answer.
func (a *API) action(mux *http.ServeMux, path string, do func(r *http.Request, c *identity.Context, id string, doc Body) (any, error)) {
	mux.HandleFunc("PUT "+Prefix+"/"+path, func(w http.ResponseWriter, r *http.Request) {
		doc, err := readJSON(r)
		var out any
		if err == nil {
			out, err = do(r, caller(r), pathID(r, "id"), Body(doc))
		}
		a.reply(w, r, err, http.StatusOK, out)
	})
}

// viewOne renders one object of a resource for the caller of r.
func (a *API) viewOne(r *http.Request, res *resource, o model.Object) (map[string]any, error) {
	var m map[string]any
	err := a.read(r.Context(), caller(r), func(v *viewer) error {
		m = res.view(v, o)
		return nil
	})
	return m, err
}
