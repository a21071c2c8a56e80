package neutron

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// Class is the kind of refusal an Error is, after neutron-lib's exception
// hierarchy (BadRequest, NotAuthorized, NotFound, Conflict and InUse, …).
// The API's fault map turns a class into an HTTP status; the domain never
// names one.
type Class int

// The classes. The zero value is an internal failure: an Error nobody
// classified is a bug, not the caller's fault.
const (
	Internal           Class = iota
	BadRequest               // the request is wrong
	NotAuthorized            // policy refuses the caller
	NotFound                 // no such object (or the caller may not see it)
	Conflict                 // the state of things refuses it (in use, taken, over quota)
	PreconditionFailed       // If-Match names another revision
	Unavailable              // the NSDB did not answer, or nothing is left to allocate
)

// Error is a Neutron API error: its class, the exception class name Neutron
// would raise (Type), its message and an optional detail. The API renders
// it as {"NeutronError": {"type", "message", "detail"}}.
type Error struct {
	Class   Class
	Type    string
	Message string
	Detail  string
}

func (e *Error) Error() string { return e.Message }

// NewError is an error of a class and exception type.
func NewError(class Class, typ, format string, args ...any) *Error {
	return &Error{Class: class, Type: typ, Message: fmt.Sprintf(format, args...)}
}

// The exceptions, with neutron-lib's and Neutron's messages.

// BadResourceRequest is neutron-lib's BadRequest about one resource.
func BadResourceRequest(resource, format string, args ...any) *Error {
	return NewError(BadRequest, "BadRequest", "Bad %s request: %s.", resource, strings.TrimSuffix(fmt.Sprintf(format, args...), "."))
}

// InvalidInput is neutron-lib's InvalidInput.
func InvalidInput(format string, args ...any) *Error {
	return NewError(BadRequest, "InvalidInput", "Invalid input for operation: %s.", strings.TrimSuffix(fmt.Sprintf(format, args...), "."))
}

// HTTPBadRequest is what Neutron's API layer raises for malformed requests
// (webob's HTTPBadRequest).
func HTTPBadRequest(format string, args ...any) *Error {
	return NewError(BadRequest, "HTTPBadRequest", format, args...)
}

// Invalid is the error of an attribute's value that fails its validator.
func Invalid(attr, format string, args ...any) *Error {
	return HTTPBadRequest("Invalid input for %s. Reason: %s.", attr, fmt.Sprintf(format, args...))
}

// PolicyNotAuthorized is oslo.policy's refusal of an action.
func PolicyNotAuthorized(action string) *Error {
	return NewError(NotAuthorized, "PolicyNotAuthorized", "rule:%s is disallowed by policy", action)
}

// notFoundTypes are the resources' NotFound exceptions: type and message.
var notFoundTypes = map[*model.Kind][2]string{
	NetworkKind:           {"NetworkNotFound", "Network %s could not be found."},
	SubnetKind:            {"SubnetNotFound", "Subnet %s could not be found."},
	PortKind:              {"PortNotFound", "Port %s could not be found."},
	RouterKind:            {"RouterNotFound", "Router %s could not be found"},
	FloatingIPKind:        {"FloatingIPNotFound", "Floating IP %s could not be found"},
	SecurityGroupKind:     {"SecurityGroupNotFound", "Security group %s does not exist"},
	SecurityGroupRuleKind: {"SecurityGroupRuleNotFound", "Security group rule %s does not exist"},
	PortForwardingKind:    {"PortForwardingNotFound", "Port Forwarding %s could not be found."},
	NetSegmentKind:        {"SegmentNotFound", "Segment %s could not be found."},
	TrunkKind:             {"TrunkNotFound", "Trunk %s could not be found."},
	QoSPolicyKind:         {"QosPolicyNotFound", "QoS policy %s could not be found."},
	SubnetPoolKind:        {"SubnetPoolNotFound", "Subnet pool %s could not be found."},
	AddressScopeKind:      {"AddressScopeNotFound", "Address scope %s could not be found."},
	AddressGroupKind:      {"AddressGroupNotFound", "Address group %s could not be found."},
	RBACPolicyKind:        {"RbacPolicyNotFound", "RBAC policy with ID %s not found"},
	IKEPolicyKind:         {"IKEPolicyNotFound", "IKEPolicy %s could not be found"},
	IPsecPolicyKind:       {"IPsecPolicyNotFound", "IPsecPolicy %s could not be found"},
	VPNServiceKind:        {"VPNServiceNotFound", "VPNService %s could not be found"},
	EndpointGroupKind:     {"VPNEndpointGroupNotFound", "Endpoint group %s could not be found"},
	SiteConnectionKind:    {"IPsecSiteConnectionNotFound", "ipsec_site_connection %s not found"},
	FirewallRuleKind:      {"FirewallRuleNotFound", "Firewall rule %s could not be found."},
	FirewallPolicyKind:    {"FirewallPolicyNotFound", "Firewall policy %s could not be found."},
	FirewallGroupKind:     {"FirewallGroupNotFound", "Firewall group %s could not be found."},
	BGPSpeakerKind:        {"BgpSpeakerNotFound", "BGP speaker %s could not be found."},
	BGPPeerKind:           {"BgpPeerNotFound", "BGP peer %s could not be found."},
	BGPVPNKind:            {"BGPVPNNotFound", "BGPVPN %s could not be found"},
	TapServiceKind:        {"TapServiceNotFound", "Tap Service  %s does not exist"},
	TapFlowKind:           {"TapFlowNotFound", "Tap Flow  %s does not exist"},
	TapMirrorKind:         {"TapMirrorNotFound", "Tap Mirror %s does not exist"},
}

// NotFoundError is the not-found error of an object of a kind.
func NotFoundError(k *model.Kind, id string) *Error {
	if t, ok := notFoundTypes[k]; ok {
		return NewError(NotFound, t[0], t[1], id)
	}
	return NewError(NotFound, "NotFound", "%s %s could not be found.", resourceName(k), id)
}

func inUse(typ, format string, args ...any) *Error { return NewError(Conflict, typ, format, args...) }

func conflict(typ, format string, args ...any) *Error {
	return NewError(Conflict, typ, format, args...)
}

// RevisionNumberConstraintFailed is the If-Match failure.
func revisionConstraintFailed(expected, current int64) *Error {
	e := NewError(PreconditionFailed, "RevisionNumberConstraintFailed",
		"The server does not meet one of the preconditions that the requester put on the request.")
	e.Detail = fmt.Sprintf("Constrained to %d, but current revision is %d", expected, current)
	return e
}

// AsError maps any error to the Neutron error the API answers with: store
// and model errors that escaped a more precise check keep their class.
func AsError(err error) *Error {
	var ne *Error
	var fe *model.FieldError
	var ce *model.ConflictError
	switch {
	case errors.As(err, &ne):
		return ne
	case errors.As(err, &fe):
		return InvalidInput("%s", fe.Error())
	case errors.As(err, &ce):
		return conflict("Conflict", "%s", ce.Msg)
	case errors.Is(err, model.ErrNotFound):
		return NewError(NotFound, "NotFound", "%s", err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return NewError(Unavailable, "ServiceUnavailable", "The service is unavailable: the NSDB did not answer in time.")
	}
	return NewError(Internal, "HTTPInternalServerError", "Request Failed: internal server error while processing your request.")
}

// quoted is a list of strings as Python prints it (Neutron's messages do).
func quoted(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + x + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// intList is a list of integers as Python prints it.
func intList(xs []int) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = fmt.Sprint(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
