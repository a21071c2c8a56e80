package neutron

import (
	"errors"
	"net/http"

	"github.com/nagare/nagare/pkg/neutron"
)

// Neutron's fault map: the status each class of error answers with.
var faultMap = map[neutron.Class]int{
	neutron.Internal:           http.StatusInternalServerError,
	neutron.BadRequest:         http.StatusBadRequest,
	neutron.NotAuthorized:      http.StatusForbidden,
	neutron.NotFound:           http.StatusNotFound,
	neutron.Conflict:           http.StatusConflict,
	neutron.PreconditionFailed: http.StatusPreconditionFailed,
	neutron.Unavailable:        http.StatusServiceUnavailable,
}

// errTooLarge is a body over the limit: webob's 413, which no domain class
// names.
var errTooLarge = errors.New("request body over 1 MiB")

// malformed is a body that is not a JSON object.
func malformed() *neutron.Error {
	return neutron.NewError(neutron.BadRequest, "MalformedRequestBody", "Malformed request body: The request body is not a JSON object.")
}

// notFound is webob's HTTPNotFound, for paths no route serves.
func notFound() *neutron.Error {
	return neutron.NewError(neutron.NotFound, "HTTPNotFound", "The resource could not be found.")
}

// writeError writes the NeutronError document.
func writeError(w http.ResponseWriter, status int, e *neutron.Error) {
	writeJSON(w, status, map[string]any{"NeutronError": map[string]string{"type": e.Type, "message": e.Message, "detail": e.Detail}})
}

// fail answers a failed request; server-side failures are logged.
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, &neutron.Error{Type: "HTTPRequestEntityTooLarge", Message: "Request is too large."})
		return
	}
	e := neutron.AsError(err)
	status := faultMap[e.Class]
	if status >= 500 {
		a.log.Error("neutron request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeError(w, status, e)
}

// reply answers doc with status, or the error.
func (a *API) reply(w http.ResponseWriter, r *http.Request, err error, status int, doc any) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, status, doc)
}

// done answers status without a body, or the error.
func (a *API) done(w http.ResponseWriter, r *http.Request, err error, status int) {
	if err != nil {
		a.fail(w, r, err)
		return
	}
	w.WriteHeader(status)
}
