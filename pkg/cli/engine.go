package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/google/shlex"
)

// Engine runs CLI commands against the API.
type Engine struct {
	API *Client
	Out io.Writer
	// JSON prints API objects as JSON instead of object lines (-o json).
	JSON bool
}

// Run splits a line with shell quoting and runs it. Blank lines and
// comments do nothing.
func (e *Engine) Run(ctx context.Context, line string) error {
	words, err := shlex.Split(line)
	if err != nil {
		return &SyntaxError{Words: strings.Fields(line), Reason: "unbalanced quotes or a trailing backslash"}
	}
	return e.RunWords(ctx, words)
}

// RunWords runs a command already split into words.
func (e *Engine) RunWords(ctx context.Context, words []string) error {
	c, err := Parse(words)
	if err != nil || c == nil {
		return err
	}
	return e.Exec(ctx, c)
}

// Exec runs a parsed command.
func (e *Engine) Exec(ctx context.Context, c *Command) error {
	s := newSession(ctx, e.API)
	var err error
	switch {
	case c.View != nil && len(c.Path) == 0:
		err = e.natAll(s, c) // show ip nat translations: every router
	case c.View != nil:
		err = e.view(s, c)
	case c.Verb == VerbTrace:
		err = e.trace(s, c)
	default:
		err = e.exec(s, c)
	}
	return classify(s, err, c)
}

func (e *Engine) exec(s *session, c *Command) error {
	var err error
	switch c.Verb {
	case VerbList:
		err = e.list(s, c)
	case VerbShow:
		err = e.show(s, c)
	case VerbCreate:
		err = e.create(s, c)
	case VerbSet, VerbClear:
		err = e.update(s, c)
	case VerbDelete:
		err = e.delete(s, c)
	case VerbDescribe:
		err = e.describe(c)
	case VerbRevoke:
		err = e.revoke(s, c)
	}
	return err
}

// revoke ends a host's identity (POST /hosts/{id}/revoke): its NSDB
// access at once, its liveness, its certificates.
func (e *Engine) revoke(s *session, c *Command) error {
	path, err := s.resolvePath(c.Path)
	if err != nil {
		return err
	}
	_, err = s.api.Post(s.ctx, "/hosts/"+path[len(path)-1].id()+"/revoke", nil)
	return err
}

// classify turns any failure into one of the three errors operators see.
func classify(s *session, err error, c *Command) error {
	var se *SyntaxError
	var ue *UserError
	var ie *InternalError
	var ae *APIError
	switch {
	case err == nil, errors.Is(err, ErrIncomplete), errors.As(err, &se), errors.As(err, &ue), errors.As(err, &ie):
		return err
	case errors.As(err, &ae) && ae.Status/100 == 4:
		s.invalidate() // the failed write may have been half-seen; names must be current
		return &UserError{Msg: s.aliasesIn(cliFieldNames(ae, c))}
	}
	return &InternalError{Err: err}
}

// cliFieldNames rewrites the field a server message starts with from its
// API name to the CLI word the operator typed ("network: …" → "net: …").
// The field is looked up in the command's type, then along its path, then
// in the types it refers to (a binding's error is about its port).
func cliFieldNames(ae *APIError, c *Command) string {
	msg := ae.Message
	if ae.Field == "" || !strings.HasPrefix(msg, ae.Field+": ") {
		return msg
	}
	var rows []*Row
	if c.Row != nil {
		rows = append(rows, c.Row)
	}
	for i := len(c.Path) - 1; i >= 0; i-- {
		rows = append(rows, c.Path[i].Row)
	}
	for _, r := range slices.Clone(rows) {
		for _, f := range r.Fields {
			if pr := rowForRef(f); pr != nil && !f.Parent {
				rows = append(rows, pr)
			}
		}
	}
	for _, r := range rows {
		if f := r.field(ae.Field); f != nil && f.CLI != "" {
			return f.CLI + msg[len(ae.Field):]
		}
	}
	return msg
}

// uuidAfterKind finds "KIND UUID" in server messages.
var uuidAfterKind = regexp.MustCompile(`\b([a-z][a-z-]*) ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b`)

// aliasesIn replaces "bridge 648d…" in a server message by "bridge bridge0",
// so errors speak the names the operator uses. Unknown ids stay as they are.
func (s *session) aliasesIn(msg string) string {
	return uuidAfterKind.ReplaceAllStringFunc(msg, func(m string) string {
		sub := uuidAfterKind.FindStringSubmatch(m)
		r := rowsByKind[sub[1]]
		if r == nil || r.Prefix == "" {
			return m
		}
		return sub[1] + " " + s.refText(r, sub[2])
	})
}

func (e *Engine) list(s *session, c *Command) error {
	path, err := s.resolvePath(c.Path)
	if err != nil {
		return err
	}
	var objs []*object
	if len(path) == 0 {
		objs, err = s.all(c.Row)
	} else {
		objs, err = s.children(c.Row, path[len(path)-1])
	}
	if err != nil {
		return err
	}
	if objs, err = s.filter(objs, c.Assigns, path); err != nil {
		return err
	}
	if e.JSON {
		list := make([]json.RawMessage, len(objs))
		for i, o := range objs {
			list[i] = o.json
		}
		return e.printJSON(list)
	}
	for _, o := range objs {
		line, err := s.line(o, len(path) > 0)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.Out, line)
	}
	return nil
}

func (e *Engine) show(s *session, c *Command) error {
	path, err := s.resolvePath(c.Path)
	if err != nil {
		return err
	}
	o := path[len(path)-1]
	if len(c.Fields) == 0 {
		if e.JSON {
			return e.printJSON(o.json)
		}
		line, err := s.line(o, len(path) > 1)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.Out, line)
		return nil
	}
	w := c.Fields[0]
	var text string
	var js any
	switch col := o.row.column(w); {
	case w == "id":
		text, js = o.id(), o.raw["id"]
	case col != nil:
		text = col.Value(s, o)
		js = text
	default:
		for _, f := range o.row.fieldsFor(w) {
			if t, ok := s.fieldText(o, f); ok {
				text, js = t, o.raw[f.JSON]
				break
			}
		}
	}
	if e.JSON {
		if js == nil {
			js = json.RawMessage("null")
		}
		return e.printJSON(js)
	}
	if text != "" {
		fmt.Fprintln(e.Out, text)
	}
	return nil
}

func (e *Engine) create(s *session, c *Command) error {
	path, err := s.resolvePath(c.Path)
	if err != nil {
		return err
	}
	body := map[string]any{}
	coll := ""
	if len(path) > 0 {
		parent := path[len(path)-1]
		if c.Row.Nested != "" {
			coll = "/" + parent.row.plural() + "/" + parent.id() + "/" + c.Row.Nested
		} else {
			// Every object on the path that can own the new one does:
			// a BGP peer added below router0's port1 belongs to both.
			for _, o := range path {
				if f := c.Row.parentField(o.row); f != nil {
					body[f.JSON] = o.id()
				}
			}
		}
	} else if c.Row.Nested != "" {
		return &UserError{Msg: c.Row.Word + " objects are created below their " + parentWords(c.Row)}
	}
	if coll == "" {
		coll = "/" + c.Row.plural()
	}
	if err := s.body(body, c.Assigns, path); err != nil {
		return err
	}
	it, err := s.api.Create(s.ctx, coll, body)
	if err != nil {
		return err
	}
	if it.fields == nil {
		return &InternalError{Err: fmt.Errorf("POST %s: the server answered without the new object", coll)}
	}
	s.invalidate()
	if e.JSON {
		return e.printJSON(it.bytes)
	}
	o := &object{row: c.Row, raw: it.fields, json: it.bytes}
	if c.Row.Prefix == "" {
		line, err := s.line(o, false)
		if err != nil {
			return err
		}
		fmt.Fprintln(e.Out, line)
		return nil
	}
	a, err := s.alias(o)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Out, a)
	return nil
}

// body fills the JSON body of a create or set from assignments.
func (s *session) body(body map[string]any, assigns []Assign, context []*object) error {
	for _, a := range assigns {
		f, v, err := s.value(a, context)
		if err != nil {
			return err
		}
		if a.Refs != nil && !f.IsList() {
			var ids []string
			_ = json.Unmarshal(v, &ids)
			body[f.JSON] = ids[0]
		} else {
			body[f.JSON] = v
		}
		if f.Inv != "" {
			body[f.Inv] = a.Neg // a plain value also lifts an earlier negation
		}
	}
	return nil
}

func (e *Engine) update(s *session, c *Command) error {
	path, err := s.resolvePath(c.Path)
	if err != nil {
		return err
	}
	o := path[len(path)-1]
	if o.row.Kind == nil {
		return &UserError{Msg: fmt.Sprintf("a %s cannot be changed; delete it and add it again", o.row.Word)}
	}
	body := map[string]any{}
	if c.Verb == VerbSet {
		err = s.body(body, c.Assigns, path)
	} else {
		for _, w := range c.Fields {
			for _, f := range o.row.fieldsFor(w) {
				body[f.JSON] = nil
				if f.Inv != "" {
					body[f.Inv] = false
				}
			}
		}
	}
	if err != nil {
		return err
	}
	_, err = s.api.Update(s.ctx, "/"+o.row.plural()+"/"+o.id(), body)
	return err
}

func (e *Engine) delete(s *session, c *Command) error {
	path, err := s.resolvePath(c.Path)
	if err != nil {
		return err
	}
	o := path[len(path)-1]
	if o.row.Nested == "" {
		return s.api.Delete(s.ctx, "/"+o.row.plural()+"/"+o.id())
	}
	parent, err := s.parentOf(o)
	if err != nil {
		return err
	}
	if parent == nil {
		parent = path[len(path)-2]
	}
	return s.api.Delete(s.ctx, "/"+parent.row.plural()+"/"+parent.id()+"/"+o.row.Nested+"/"+url.PathEscape(o.str(o.row.Key)))
}

func (e *Engine) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = e.Out.Write(out.Bytes())
	return err
}
