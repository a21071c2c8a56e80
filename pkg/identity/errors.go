package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// Class is the kind of refusal an Error is, after Keystone's exceptions
// (ValidationError, Unauthorized, Forbidden, NotFound, Conflict). The
// identity API turns a class into an HTTP status; this package never names
// one.
type Class int

// The classes; the zero value is an internal failure.
const (
	Internal     Class = iota
	BadRequest         // the request is invalid
	Unauthorized       // no valid credentials (ErrInvalidToken)
	Forbidden          // policy refuses the caller
	NotFound           // no such object
	Conflict           // a name is taken
	Unavailable        // the NSDB did not answer in time
)

// Error is a refusal with Keystone's message.
type Error struct {
	Class   Class
	Message string
}

func (e *Error) Error() string { return e.Message }

func newError(class Class, format string, args ...any) *Error {
	return &Error{Class: class, Message: fmt.Sprintf(format, args...)}
}

func forbidden() *Error {
	return newError(Forbidden, "You are not authorized to perform the requested action.")
}

func notFound(what, id string) *Error { return newError(NotFound, "Could not find %s: %s.", what, id) }

func invalid(format string, args ...any) *Error { return newError(BadRequest, format, args...) }

// duplicate words a taken name as Keystone does.
func duplicate(err error, what, name string) error {
	var fe *model.FieldError
	if errors.As(err, &fe) && fe.Field == "name" {
		return newError(Conflict, "Conflict occurred attempting to store %s - Duplicate entry found with name %s at domain ID %s.", what, name, DefaultDomainID)
	}
	return err
}

// AsError maps any error to the refusal the identity API answers with:
// store errors that escaped a more precise check keep their meaning.
func AsError(err error) *Error {
	var e *Error
	var fe *model.FieldError
	var ce *model.ConflictError
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, ErrInvalidToken):
		return newError(Unauthorized, "The request you have made requires authentication.")
	case errors.As(err, &fe):
		if strings.Contains(fe.Msg, "already used") {
			return newError(Conflict, "Conflict occurred attempting to store %s: %s.", fe.Field, fe.Msg)
		}
		return invalid("Invalid input for field '%s': %s.", fe.Field, fe.Msg)
	case errors.As(err, &ce):
		return newError(Conflict, "%s", ce.Msg)
	case errors.Is(err, model.ErrNotFound):
		return newError(NotFound, "%s", err.Error())
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return newError(Unavailable, "The NSDB did not answer in time.")
	}
	return newError(Internal, "An unexpected error prevented the server from fulfilling your request: %s", err.Error())
}
