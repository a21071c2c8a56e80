package neutron

import (
	"encoding/json"
	"net/http"
	"slices"

	"github.com/nagare/nagare/pkg/neutron"
)

// Tags (standard-attr-tag): /v2.0/<collection>/{id}/tags.

func (a *API) registerTags(mux *http.ServeMux, res *resource) {
	base := Prefix + "/" + res.urlPath() + "/{id}/tags"
	mux.HandleFunc("GET "+base, a.listTags(res))
	mux.HandleFunc("PUT "+base, a.replaceTags(res))
	mux.HandleFunc("DELETE "+base, a.changeTags(res, http.StatusNoContent, func(*http.Request, []string) ([]string, error) { return nil, nil }))
	mux.HandleFunc("GET "+base+"/{tag}", a.checkTag(res))
	mux.HandleFunc("PUT "+base+"/{tag}", a.validTag(a.changeTags(res, http.StatusCreated, func(r *http.Request, t []string) ([]string, error) {
		return append(t, r.PathValue("tag")), nil
	})))
	mux.HandleFunc("DELETE "+base+"/{tag}", a.changeTags(res, http.StatusNoContent, func(r *http.Request, t []string) ([]string, error) {
		i := slices.Index(t, r.PathValue("tag"))
		if i < 0 {
			return nil, neutron.TagNotFound(res.kind, pathID(r, "id"), r.PathValue("tag"))
		}
		return slices.Delete(t, i, i+1), nil
	}))
}

func (a *API) listTags(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tags, err := a.svc.Tags(r.Context(), caller(r), res.kind, pathID(r, "id"))
		a.reply(w, r, err, http.StatusOK, map[string]any{"tags": tags})
	}
}

func (a *API) checkTag(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tags, err := a.svc.Tags(r.Context(), caller(r), res.kind, pathID(r, "id"))
		if err == nil && !slices.Contains(tags, r.PathValue("tag")) {
			err = neutron.TagNotFound(res.kind, pathID(r, "id"), r.PathValue("tag"))
		}
		a.done(w, r, err, http.StatusNoContent)
	}
}

func (a *API) replaceTags(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var want []string
		doc, err := readJSON(r)
		if err == nil {
			err = json.Unmarshal(doc["tags"], &want)
		}
		if err != nil || want == nil {
			a.fail(w, r, neutron.HTTPBadRequest("Invalid input for tags: expected {\"tags\": [...]}"))
			return
		}
		tags, err := a.svc.ChangeTags(r.Context(), caller(r), res.kind, pathID(r, "id"), func([]string) ([]string, error) { return want, nil })
		a.reply(w, r, err, http.StatusOK, map[string]any{"tags": tags})
	}
}

// validTag refuses a malformed tag in the URL before anything else.
func (a *API) validTag(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := neutron.ValidTag(r.PathValue("tag")); err != nil {
			a.fail(w, r, err)
			return
		}
		h(w, r)
	}
}

// changeTags answers status after applying change to an object's tags.
func (a *API) changeTags(res *resource, status int, change func(*http.Request, []string) ([]string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, err := a.svc.ChangeTags(r.Context(), caller(r), res.kind, pathID(r, "id"), func(t []string) ([]string, error) { return change(r, t) })
		a.done(w, r, err, status)
	}
}
