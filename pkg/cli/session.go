package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// object is one API object with the row that shows it.
type object struct {
	row  *Row
	raw  raw
	json json.RawMessage // the server's bytes, for -o json
}

func (o *object) id() string { return o.str("id") }

// str decodes a string field ("" when absent or not a string).
func (o *object) str(field string) string {
	var s string
	_ = json.Unmarshal(o.raw[field], &s)
	return s
}

// has reports whether a field has a non-empty value.
func (o *object) has(field string) bool {
	v := string(o.raw[field])
	return v != "" && v != "null" && v != `""` && v != "[]" && v != "false" && v != "0"
}

// refIDs decodes the id or ids a reference field holds.
func (o *object) refIDs(f *model.Field) []string {
	if f.IsList() {
		var ids []string
		_ = json.Unmarshal(o.raw[f.JSON], &ids)
		return ids
	}
	if s := o.str(f.JSON); s != "" {
		return []string{s}
	}
	return nil
}

// session is the state of one command: the collections fetched so far.
// Aliases are computed from these lists, so they are exactly as stable as
// the server's ordering (creation order) and need no state between runs:
// `nagare -e "create bridge"` then `nagare -e "bridge bridge0 add port"`
// works. The price is that deleting an object renumbers its later siblings.
type session struct {
	ctx    context.Context
	api    *Client
	flat   map[*Row][]*object
	nested map[string][]*object
}

func newSession(ctx context.Context, api *Client) *session {
	return &session{ctx: ctx, api: api, flat: map[*Row][]*object{}, nested: map[string][]*object{}}
}

// invalidate forgets what was fetched, after a write.
func (s *session) invalidate() {
	clear(s.flat)
	clear(s.nested)
}

func (s *session) fetch(r *Row, path string) ([]*object, error) {
	items, err := s.api.List(s.ctx, path)
	if err != nil {
		return nil, err
	}
	out := make([]*object, len(items))
	for i, it := range items {
		out[i] = &object{row: r, raw: it.fields, json: it.bytes}
	}
	return out, nil
}

// all lists every object of a row's kind, in the server's order.
func (s *session) all(r *Row) ([]*object, error) {
	if objs, ok := s.flat[r]; ok {
		return objs, nil
	}
	if r.Kind == nil {
		return nil, fmt.Errorf("%s objects can only be listed below their %s", r.Word, r.parents()[0].Word)
	}
	objs, err := s.fetch(r, "/"+r.plural())
	if err != nil {
		return nil, err
	}
	s.flat[r] = objs
	return objs, nil
}

// children lists the objects of row r owned by parent, in the server's order.
func (s *session) children(r *Row, parent *object) ([]*object, error) {
	if r.Nested != "" {
		path := "/" + parent.row.plural() + "/" + parent.id() + "/" + r.Nested
		if objs, ok := s.nested[path]; ok {
			return objs, nil
		}
		objs, err := s.fetch(r, path)
		if err != nil {
			return nil, err
		}
		s.nested[path] = objs
		return objs, nil
	}
	all, err := s.all(r)
	if err != nil {
		return nil, err
	}
	pf := r.parentField(parent.row)
	if pf == nil {
		return nil, nil
	}
	pid := parent.id()
	return slices.DeleteFunc(slices.Clone(all), func(o *object) bool { return o.str(pf.JSON) != pid }), nil
}

// byID finds an object of row r by UUID (nil if there is none).
func (s *session) byID(r *Row, id string) (*object, error) {
	all, err := s.all(r)
	if err != nil {
		return nil, err
	}
	for _, o := range all {
		if o.id() == id {
			return o, nil
		}
	}
	return nil, nil
}

// parentOf returns the owner of o (nil for root objects).
func (s *session) parentOf(o *object) (*object, error) {
	for _, f := range o.row.Fields {
		if !f.Parent {
			continue
		}
		pr := rowsByKind[f.Ref]
		if id := o.str(f.JSON); id != "" && pr != nil {
			p, err := s.byID(pr, id)
			if err == nil && p == nil {
				err = fmt.Errorf("%s %s of %s %s does not exist", pr.Word, id, o.row.Word, o.id())
			}
			return p, err
		}
	}
	return nil, nil
}

// shortAlias is the object's alias among its siblings ("port0").
func (s *session) shortAlias(o *object) (string, error) {
	if o.row.Prefix == "" {
		return "", fmt.Errorf("%s objects have no alias", o.row.Word)
	}
	parent, err := s.parentOf(o)
	if err != nil {
		return "", err
	}
	var sibs []*object
	if parent == nil {
		sibs, err = s.all(o.row)
	} else {
		sibs, err = s.children(o.row, parent)
	}
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(sibs, func(x *object) bool { return x.id() == o.id() })
	if i < 0 {
		return "", fmt.Errorf("%s %s is not listed by the server", o.row.Word, o.id())
	}
	return o.row.Prefix + strconv.Itoa(i), nil
}

// alias is the composed alias that names o from the top ("bridge0:port0").
func (s *session) alias(o *object) (string, error) {
	a, err := s.shortAlias(o)
	if err != nil {
		return "", err
	}
	parent, err := s.parentOf(o)
	if err != nil || parent == nil {
		return a, err
	}
	pa, err := s.alias(parent)
	if err != nil {
		return "", err
	}
	return pa + ":" + a, nil
}

// refText names the object a reference points at: its composed alias, or
// its UUID when it has none (or no longer exists).
func (s *session) refText(r *Row, id string) string {
	if r == nil || r.Prefix == "" {
		return id
	}
	o, err := s.byID(r, id)
	if err != nil || o == nil {
		return id
	}
	a, err := s.alias(o)
	if err != nil {
		return id
	}
	return a
}

// parentAlias names o's owner (a port's device).
func (s *session) parentAlias(o *object) string {
	p, err := s.parentOf(o)
	if err != nil || p == nil {
		return ""
	}
	if a, err := s.alias(p); err == nil {
		return a
	}
	return p.id()
}

// resolvePath turns object steps into objects, each inside the previous.
// A bare last step resolves to nothing (the caller wants its type).
func (s *session) resolvePath(steps []Step) ([]*object, error) {
	var objs []*object
	var parent *object
	for _, st := range steps {
		var o *object
		var err error
		switch {
		case st.ID != "":
			o, err = s.resolveID(st.Row, parent, st.ID)
		case st.Filter != nil:
			o, err = s.resolveFilter(st.Row, parent, st.Filter, objs)
		default:
			return objs, nil
		}
		if err != nil {
			return nil, err
		}
		objs = append(objs, o)
		parent = o
	}
	return objs, nil
}

// splitAlias splits "port12" into "port" and 12.
func splitAlias(a string) (string, int, bool) {
	i := len(a)
	for i > 0 && a[i-1] >= '0' && a[i-1] <= '9' {
		i--
	}
	if i == 0 || i == len(a) || (a[i] == '0' && i < len(a)-1) {
		return "", 0, false
	}
	n, err := strconv.Atoi(a[i:])
	return a[:i], n, err == nil
}

// resolveID finds the object of row r that id names below parent (nil at
// top level). id is a UUID, an alias or a composed alias.
func (s *session) resolveID(r *Row, parent *object, id string) (*object, error) {
	var o *object
	var err error
	switch {
	case model.IsUUID(id):
		if r.Kind == nil {
			return nil, &UserError{Msg: fmt.Sprintf("%s objects have no id; name one by a field: %s %s VALUE", r.Word, r.Word, r.field(r.Key).CLI)}
		}
		if o, err = s.byID(r, id); err == nil && o == nil {
			err = &UserError{Msg: fmt.Sprintf("there is no %s with id %s", r.Word, id)}
		}
	case strings.Contains(id, ":"):
		o, err = s.resolveComposed(id)
		if err == nil && o.row != r {
			err = &UserError{Msg: fmt.Sprintf("%s is a %s, not a %s", id, o.row.Word, r.Word)}
		}
	default:
		prefix, n, ok := splitAlias(id)
		if !ok || prefix != r.Prefix {
			return nil, &UserError{Msg: fmt.Sprintf("%q is not a %s alias or UUID (%s aliases look like %s0)", id, r.Word, r.Word, r.Prefix)}
		}
		if parent == nil && !r.isRoot() {
			return nil, &UserError{Msg: fmt.Sprintf("%s needs its %s: write %s", id, parentWords(r), composedExample(r, id))}
		}
		return s.nth(r, parent, n, id)
	}
	if err != nil {
		return nil, err
	}
	if parent != nil {
		if p, err := s.parentOf(o); err != nil || p == nil || p.id() != parent.id() {
			pa, _ := s.alias(parent)
			return nil, &UserError{Msg: fmt.Sprintf("%s is not a %s of %s", id, r.Word, pa)}
		}
	}
	return o, nil
}

// nth returns the n-th object of r below parent.
func (s *session) nth(r *Row, parent *object, n int, alias string) (*object, error) {
	var sibs []*object
	var err error
	where := ""
	if parent == nil {
		sibs, err = s.all(r)
	} else {
		sibs, err = s.children(r, parent)
		pa, _ := s.alias(parent)
		where = " of " + pa
	}
	if err != nil {
		return nil, err
	}
	if n >= len(sibs) {
		return nil, &UserError{Msg: fmt.Sprintf("there is no %s %s%s (%s)", r.Word, alias, where, countOf(r, len(sibs)))}
	}
	return sibs[n], nil
}

func countOf(r *Row, n int) string {
	switch n {
	case 0:
		return "there are none"
	case 1:
		return "there is only " + r.Prefix + "0"
	}
	return fmt.Sprintf("there are %d: %s0 to %s%d", n, r.Prefix, r.Prefix, n-1)
}

func parentWords(r *Row) string {
	var ws []string
	for _, p := range r.parents() {
		ws = append(ws, p.Word)
	}
	return strings.Join(ws, " or ")
}

func composedExample(r *Row, alias string) string {
	var ex []string
	for _, p := range r.parents() {
		ex = append(ex, p.Prefix+"0:"+alias)
	}
	return strings.Join(ex, " or ")
}

// resolveComposed resolves "router0:port1" from the top.
func (s *session) resolveComposed(a string) (*object, error) {
	var o *object
	for i, part := range strings.Split(a, ":") {
		prefix, n, ok := splitAlias(part)
		if !ok {
			return nil, &UserError{Msg: fmt.Sprintf("%q in %s is not an alias", part, a)}
		}
		var r *Row
		for _, c := range table {
			if c.Prefix == prefix && ((i == 0 && c.isRoot()) || (i > 0 && slices.Contains(o.row.children, c))) {
				r = c
			}
		}
		if r == nil {
			return nil, &UserError{Msg: fmt.Sprintf("%s: nothing here has aliases starting with %q", a, prefix)}
		}
		var err error
		if o, err = s.nth(r, o, n, part); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// resolveFilter picks the single object of r below parent that matches.
func (s *session) resolveFilter(r *Row, parent *object, filter []Assign, context []*object) (*object, error) {
	var cands []*object
	var err error
	if parent == nil {
		cands, err = s.all(r)
	} else {
		cands, err = s.children(r, parent)
	}
	if err != nil {
		return nil, err
	}
	matched, err := s.filter(cands, filter, context)
	if err != nil {
		return nil, err
	}
	desc := r.Word
	for _, a := range filter {
		desc += " " + a.Word + " " + a.Text
	}
	switch len(matched) {
	case 0:
		return nil, &UserError{Msg: "no " + desc + " here"}
	case 1:
		return matched[0], nil
	}
	return nil, &UserError{Msg: fmt.Sprintf("%d objects match %s; add a field to pick one", len(matched), desc)}
}

// filter keeps the objects that match every assignment.
func (s *session) filter(objs []*object, filter []Assign, context []*object) ([]*object, error) {
	for _, a := range filter {
		f, want, err := s.value(a, context)
		if err != nil {
			return nil, err
		}
		objs = slices.DeleteFunc(slices.Clone(objs), func(o *object) bool {
			if f.Inv != "" && o.has(f.Inv) != a.Neg {
				return true
			}
			if f.Ref != "" {
				var ids []string
				_ = json.Unmarshal(want, &ids)
				have := o.refIDs(f)
				return slices.ContainsFunc(ids, func(id string) bool { return !slices.Contains(have, id) })
			}
			return !sameValue(f, o.raw[f.JSON], want)
		})
	}
	return objs, nil
}

// value returns the field an assignment sets and its JSON value, resolving
// references (a reference filter's value is always a JSON list of ids).
func (s *session) value(a Assign, context []*object) (*model.Field, json.RawMessage, error) {
	if a.Refs == nil {
		return a.Fields[0], a.JSON, nil
	}
	var field *model.Field
	var ids []string
	for _, ref := range a.Refs {
		f, id, err := s.resolveRef(a, ref, context)
		if err != nil {
			return nil, nil, err
		}
		if field != nil && f != field {
			return nil, nil, &UserError{Msg: a.Word + ": the values are objects of different types"}
		}
		field = f
		ids = append(ids, id)
	}
	b, _ := json.Marshal(ids)
	return field, b, nil
}

// resolveRef resolves one reference value and picks, among the fields the
// word may name, the one that refers to the kind found.
func (s *session) resolveRef(a Assign, ref Ref, context []*object) (*model.Field, string, error) {
	pick := func(o *object) (*model.Field, string, error) {
		for _, f := range a.Fields {
			if o.row.Kind != nil && f.Ref == o.row.Kind.Name {
				return f, o.id(), nil
			}
		}
		return nil, "", &UserError{Msg: fmt.Sprintf("%s wants %s, and %s is a %s", a.Word, wantWords(a.Fields), ref, o.row.Word)}
	}
	switch {
	case ref.Path != nil:
		objs, err := s.resolvePath(ref.Path)
		if err != nil {
			return nil, "", err
		}
		return pick(objs[len(objs)-1])
	case model.IsUUID(ref.Word):
		for _, f := range a.Fields {
			if r := rowForRef(f); len(a.Fields) == 1 || r == nil {
				return f, ref.Word, nil // the server checks it exists
			} else if o, err := s.byID(r, ref.Word); err != nil {
				return nil, "", err
			} else if o != nil {
				return f, ref.Word, nil
			}
		}
		return nil, "", &UserError{Msg: fmt.Sprintf("%s: there is no %s with id %s", a.Word, wantWords(a.Fields), ref.Word)}
	case strings.Contains(ref.Word, ":"):
		o, err := s.resolveComposed(ref.Word)
		if err != nil {
			return nil, "", err
		}
		return pick(o)
	}
	prefix, n, _ := splitAlias(ref.Word)
	for _, f := range a.Fields {
		r := rowForRef(f)
		if r == nil || r.Prefix == "" || r.Prefix != prefix {
			continue
		}
		if r.isRoot() {
			o, err := s.nth(r, nil, n, ref.Word)
			if err != nil {
				return nil, "", err
			}
			return f, o.id(), nil
		}
		// A bare child alias means the child of the nearest object on the
		// command's path that can own it: "router router0 add route …
		// port port0" is router0:port0.
		for i := len(context) - 1; i >= 0; i-- {
			if r.parentField(context[i].row) != nil {
				o, err := s.nth(r, context[i], n, ref.Word)
				if err != nil {
					return nil, "", err
				}
				return f, o.id(), nil
			}
		}
		return nil, "", &UserError{Msg: fmt.Sprintf("%s: %s needs its %s: write %s", a.Word, ref.Word, parentWords(r), composedExample(r, ref.Word))}
	}
	return nil, "", &UserError{Msg: fmt.Sprintf("%s wants %s (an alias, a UUID or a typed path), not %s", a.Word, wantWords(a.Fields), ref.Word)}
}

func wantWords(fs []*model.Field) string {
	var ws []string
	for _, f := range fs {
		if r := rowForRef(f); r != nil {
			ws = append(ws, "a "+r.Word)
		} else {
			ws = append(ws, "a "+f.Ref)
		}
	}
	return strings.Join(ws, " or ")
}

// anyID finds text ids in free text: trace steps, flow dumps.
var anyID = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// idRows are the rows an id in free text may belong to, likeliest first,
// so naming a port fetches the ports and not every collection.
func idRows() []*Row {
	out := []*Row{rowsByName["port"], rowsByName["bridge"], rowsByName["router"], rowsByName["host"], rowsByName["chain"], rowsByName["rule"]}
	for _, r := range table {
		if r.Kind != nil && r.Prefix != "" && !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out
}

// aliaser returns a replacer that turns the ids in texts into the aliases
// of the objects they name. The simulation names a port DEVICE:ID (its
// bridge's or router's name, or id when unnamed, then its own id); that
// whole form becomes the port's composed alias, so "left:3f1c…" reads
// "bridge0:port1". Ids of no object the API lists stay as they are: the
// replacement is a convenience and never fails the command.
func (s *session) aliaser(texts []string) *strings.Replacer {
	var ported, bare []string
	seen := map[string]bool{}
	rows := idRows()
	for _, t := range texts {
		for _, id := range anyID.FindAllString(t, -1) {
			if seen[id] {
				continue
			}
			seen[id] = true
			var o *object
			for _, r := range rows {
				if o, _ = s.byID(r, id); o != nil {
					break
				}
			}
			if o == nil {
				continue
			}
			a, err := s.alias(o)
			if err != nil {
				continue
			}
			if o.row == rowsByName["port"] {
				if dev, _ := s.parentOf(o); dev != nil {
					name := dev.str("name")
					if name == "" {
						name = dev.id()
					}
					ported = append(ported, name+":"+id, a)
				}
			}
			bare = append(bare, id, a)
		}
	}
	// The DEVICE:ID forms go first: a replacer tries its pairs in order,
	// and an unnamed device's id would otherwise match on its own.
	return strings.NewReplacer(append(ported, bare...)...)
}
