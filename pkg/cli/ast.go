package cli

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// Verb is what a command does.
type Verb int

const (
	VerbList Verb = iota + 1
	VerbShow
	VerbCreate
	VerbSet
	VerbClear
	VerbDelete
	VerbDescribe
	VerbTrace
	VerbRevoke // host HOST revoke: its certificate and NSDB access end
)

var verbNames = [...]string{VerbList: "list", VerbShow: "show", VerbCreate: "create", VerbSet: "set",
	VerbClear: "clear", VerbDelete: "delete", VerbDescribe: "describe", VerbTrace: "trace", VerbRevoke: "revoke"}

func (v Verb) String() string { return verbNames[v] }

// verbOf recognises a verb word. list and show may be abbreviated to any
// prefix (midonet-cli's habit, and "l"/"s" are what people type); the verbs
// that change things are spelled out, except the traditional del and desc.
func verbOf(w string) Verb {
	switch {
	case w == "":
		return 0
	case strings.HasPrefix("list", w):
		return VerbList
	case strings.HasPrefix("show", w):
		return VerbShow
	}
	switch w {
	case "create", "add":
		return VerbCreate
	case "set":
		return VerbSet
	case "clear":
		return VerbClear
	case "delete", "del":
		return VerbDelete
	case "describe", "desc":
		return VerbDescribe
	case "revoke":
		return VerbRevoke
	}
	return 0
}

// verbWords are offered by completion.
var verbWords = []string{"list", "show", "create", "add", "set", "clear", "delete", "describe"}

// Command is one parsed CLI line.
type Command struct {
	Verb Verb
	// Path names the object acted on (show, set, clear, delete) or the
	// parent of the type listed or created (empty at top level).
	Path []Step
	// Row is the type listed, created or described.
	Row *Row
	// Assigns are the field values of create and set, and the filters of list.
	Assigns []Assign
	// Fields are the field words of clear, or the one field of show.
	Fields []string
	// View is the state shown or listed below the object Path names
	// (host host0 show datapath).
	View *View
}

// Step is one step of an object path: a type word and either an ID (alias,
// UUID or composed alias), a filter picking the single matching object, or
// nothing (a bare type, only last: "router router0 route list").
type Step struct {
	Row    *Row
	At     int // index of the type word
	ID     string
	Filter []Assign
}

// bare reports whether the step names a type rather than an object.
func (s Step) bare() bool { return s.ID == "" && s.Filter == nil }

// Assign is a field word with its value.
type Assign struct {
	At     int // index of the field word
	Word   string
	Fields []*model.Field // more than one only for refs of distinct kinds
	Neg    bool           // "!" prefix: set the field's Inv twin
	Text   string         // the value as typed
	JSON   json.RawMessage
	Refs   []Ref // for reference fields, instead of JSON
}

// Ref is a reference value: an alias, UUID or composed alias, or a typed
// path ("chain chain0").
type Ref struct {
	At   int
	Word string
	Path []Step
}

func (r Ref) String() string {
	if r.Path == nil {
		return r.Word
	}
	var parts []string
	for _, s := range r.Path {
		parts = append(parts, s.Row.Word, s.ID)
	}
	return strings.Join(parts, " ")
}

// SyntaxError is a line the grammar does not accept. It points at the first
// word that could not be parsed, as midonet-cli does.
type SyntaxError struct {
	Words  []string
	At     int
	Reason string // why, when there is more to say than the word
}

func (e *SyntaxError) Error() string {
	msg := "Syntax error at: " + strings.Join(e.Words[e.At:], " ")
	if e.Reason != "" {
		msg += "\n  " + e.Reason
	}
	return msg
}

// ErrIncomplete is a line that ends before the command is complete.
var ErrIncomplete = errors.New("Missing arguments, incomplete command")

// UserError is a command the server (or the CLI, before asking it) refused
// because of what was asked: a missing object, a read-only field, a
// validation failure.
type UserError struct{ Msg string }

func (e *UserError) Error() string { return "User error: " + e.Msg }

// InternalError is a failure that is not the operator's fault: the server
// broke, or answered something the CLI does not understand.
type InternalError struct{ Err error }

func (e *InternalError) Error() string { return "Internal error: " + e.Err.Error() }
func (e *InternalError) Unwrap() error { return e.Err }
