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
	mux.HandleFunc("DELETE "+base, a.deleteTags(res))
	mux.HandleFunc("GET "+base+"/{tag}", a.checkTag(res))
	mux.HandleFunc("PUT "+base+"/{tag}", a.addTag(res))
	mux.HandleFunc("DELETE "+base+"/{tag}", a.deleteTag(res))
}

func (a *API) listTags(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tags, err := a.svc.Tags(r.Context(), caller(r), res.kind, pathID(r, "id"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"tags": tags})
	}
}

func (a *API) checkTag(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tags, err := a.svc.Tags(r.Context(), caller(r), res.kind, pathID(r, "id"))
		if err != nil {
			a.fail(w, r, err)
			return
		}
		if !slices.Contains(tags, r.PathValue("tag")) {
			a.fail(w, r, neutron.TagNotFound(res.kind, pathID(r, "id"), r.PathValue("tag")))
			return
		}
		w.WriteHeader(http.StatusNoContent)
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
		if err != nil {
			a.fail(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{"tags": tags})
	}
}

func (a *API) deleteTags(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, err := a.svc.ChangeTags(r.Context(), caller(r), res.kind, pathID(r, "id"), func([]string) ([]string, error) { return nil, nil })
		if err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (a *API) addTag(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tag := r.PathValue("tag")
		if err := neutron.ValidTag(tag); err != nil {
			a.fail(w, r, err)
			return
		}
		_, err := a.svc.ChangeTags(r.Context(), caller(r), res.kind, pathID(r, "id"), func(t []string) ([]string, error) { return append(t, tag), nil })
		if err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}
}

func (a *API) deleteTag(res *resource) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tag := r.PathValue("tag")
		id := pathID(r, "id")
		_, err := a.svc.ChangeTags(r.Context(), caller(r), res.kind, id, func(t []string) ([]string, error) {
			i := slices.Index(t, tag)
			if i < 0 {
				return nil, neutron.TagNotFound(res.kind, id, tag)
			}
			return slices.Delete(t, i, i+1), nil
		})
		if err != nil {
			a.fail(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}
