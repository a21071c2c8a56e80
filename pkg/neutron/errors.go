package neutron

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// Error is a Neutron API error: the exception class name Neutron would
// raise (Type), its message, and the status Neutron's fault map gives the
// class (BadRequest 400, NotFound 404, Conflict and InUse 409,
// NotAuthorized 403, ServiceUnavailable 503). The API renders it as
// {"NeutronError": {"type", "message", "detail"}}.
type Error struct {
	Status  int
	Type    string
	Message string
	Detail  string
}

func (e *Error) Error() string { return e.Message }

func newErr(status int, typ, format string, args ...any) *Error {
	return &Error{Status: status, Type: typ, Message: fmt.Sprintf(format, args...)}
}

// The exceptions, with neutron-lib's and Neutron's messages.

func badRequest(resource, format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "BadRequest", "Bad %s request: %s.", resource, strings.TrimSuffix(fmt.Sprintf(format, args...), "."))
}

func invalidInput(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "InvalidInput", "Invalid input for operation: %s.", strings.TrimSuffix(fmt.Sprintf(format, args...), "."))
}

// httpBadRequest is what Neutron's API layer raises for malformed requests
// (webob's HTTPBadRequest).
func httpBadRequest(format string, args ...any) *Error {
	return newErr(http.StatusBadRequest, "HTTPBadRequest", format, args...)
}

func invalidAttr(attr string, format string, args ...any) *Error {
	return invalidInput("'%s' %s", attr, fmt.Sprintf(format, args...))
}

// NotFound errors of each resource.
func networkNotFound(id string) *Error {
	return newErr(http.StatusNotFound, "NetworkNotFound", "Network %s could not be found.", id)
}
func subnetNotFound(id string) *Error {
	return newErr(http.StatusNotFound, "SubnetNotFound", "Subnet %s could not be found.", id)
}
func portNotFound(id string) *Error {
	return newErr(http.StatusNotFound, "PortNotFound", "Port %s could not be found.", id)
}
func routerNotFound(id string) *Error {
	return newErr(http.StatusNotFound, "RouterNotFound", "Router %s could not be found", id)
}
func floatingIPNotFound(id string) *Error {
	return newErr(http.StatusNotFound, "FloatingIPNotFound", "Floating IP %s could not be found", id)
}
func securityGroupNotFound(id string) *Error {
	return newErr(http.StatusNotFound, "SecurityGroupNotFound", "Security group %s does not exist", id)
}
func securityGroupRuleNotFound(id string) *Error {
	return newErr(http.StatusNotFound, "SecurityGroupRuleNotFound", "Security group rule %s does not exist", id)
}
func portForwardingNotFound(id string) *Error {
	return newErr(http.StatusNotFound, "PortForwardingNotFound", "Port Forwarding %s could not be found.", id)
}

// resourceNotFound is what Neutron answers when policy hides an object the
// caller may not see (webob's HTTPNotFound).
func resourceNotFound() *Error {
	return newErr(http.StatusNotFound, "HTTPNotFound", "The resource could not be found.")
}

// policyNotAuthorized is oslo.policy's refusal, 403.
func policyNotAuthorized(action string) *Error {
	return newErr(http.StatusForbidden, "PolicyNotAuthorized", "rule:%s is disallowed by policy", action)
}

func inUse(typ, format string, args ...any) *Error {
	return newErr(http.StatusConflict, typ, format, args...)
}

func conflict(typ, format string, args ...any) *Error {
	return newErr(http.StatusConflict, typ, format, args...)
}

// RevisionNumberConstraintFailed is the If-Match failure, 412.
func revisionConstraintFailed(expected, current int64) *Error {
	e := newErr(http.StatusPreconditionFailed, "RevisionNumberConstraintFailed",
		"The server does not meet one of the preconditions that the requester put on the request.")
	e.Detail = fmt.Sprintf("Constrained to %d, but current revision is %d", expected, current)
	return e
}

// AsError maps any error to the Neutron error the API answers with: store
// and model errors that escaped a more precise check keep their status.
func AsError(err error) *Error {
	var ne *Error
	var fe *model.FieldError
	var ce *model.ConflictError
	switch {
	case errors.As(err, &ne):
		return ne
	case errors.As(err, &fe):
		return invalidInput("%s", fe.Error())
	case errors.As(err, &ce):
		return conflict("Conflict", "%s", ce.Msg)
	case errors.Is(err, model.ErrNotFound):
		return newErr(http.StatusNotFound, "NotFound", "%s", err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return newErr(http.StatusServiceUnavailable, "ServiceUnavailable", "The service is unavailable: the NSDB did not answer in time.")
	}
	return newErr(http.StatusInternalServerError, "HTTPInternalServerError", "Request Failed: internal server error while processing your request.")
}
