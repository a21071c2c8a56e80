package cli

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// The parser is a hand-written recursive descent over words, driven by the
// table: type words, child words and field words all come from rows, so the
// grammar needs no per-type code. The same walk serves tab completion: in
// completion mode, every point that looks at the next word records what it
// would accept there, and the walk over the words before the cursor ends at
// exactly such a point.

// Parse parses one line already split into words. An empty line gives a nil
// command.
func Parse(words []string) (*Command, error) {
	p := &parser{words: words}
	c, err := p.command()
	if err != nil {
		return nil, err
	}
	return c, nil
}

type parser struct {
	words []string
	i     int
	offer *offers // non-nil when completing
	// verbSeen is set once the verb has been read, so completion stops
	// offering verbs after the object path of "set OBJ …".
	verbSeen bool
}

func (p *parser) verbOffers() []string {
	if p.verbSeen {
		return nil
	}
	return verbWords
}

// offers is what completion may propose at the end of the words.
type offers struct {
	words   []string
	aliases []aliasOffer
}

// aliasOffer asks for the aliases of row's objects below path (or, for a
// reference value, of every object of row, composed).
type aliasOffer struct {
	row  *Row
	path []Step
	ref  bool
}

// pathMode changes how a type word followed by more words is read.
type pathMode int

const (
	// modeObject: TYPE ID | TYPE FIELD VALUE (one-pair filter) | TYPE (bare, last).
	modeObject pathMode = iota
	// modeCreate: a type followed by a field word is the type to create.
	modeCreate
	// modeValue: a typed path inside a reference value; IDs only.
	modeValue
	// modeDescribe: like modeObject, but a type may be followed directly by
	// a child type ("describe router port").
	modeDescribe
)

func (p *parser) peek() (string, bool) {
	if p.i < len(p.words) {
		return p.words[p.i], true
	}
	return "", false
}

// eof reports whether the words are used up and, when completing, records
// the words that could come next.
func (p *parser) eof(next ...string) bool {
	if p.i < len(p.words) {
		return false
	}
	if p.offer != nil {
		p.offer.words = append(p.offer.words, next...)
	}
	return true
}

func (p *parser) offerAliases(r *Row, path []Step, ref bool) {
	if p.offer != nil && p.i == len(p.words) {
		p.offer.aliases = append(p.offer.aliases, aliasOffer{r, slices.Clone(path), ref})
	}
}

func (p *parser) syntax(at int, reason string) error {
	return &SyntaxError{Words: p.words, At: at, Reason: reason}
}

func (p *parser) command() (*Command, error) {
	if p.eof(slices.Concat(verbWords, []string{"trace"}, topWords())...) {
		return nil, nil
	}
	w := p.words[p.i]
	if w == "trace" {
		p.i++
		p.verbSeen = true
		return p.trace()
	}
	if v := verbOf(w); v != 0 {
		p.i++
		p.verbSeen = true
		return p.verbFirst(v)
	}
	if topLevel[w] == nil {
		return nil, p.syntax(p.i, "")
	}
	path, err := p.pathFrom(nil, nil, modeObject)
	if err != nil {
		return nil, err
	}
	return p.afterPath(path)
}

// verbFirst parses the forms that start with the verb.
func (p *parser) verbFirst(v Verb) (*Command, error) {
	if v == VerbDescribe && p.eof(append(topWords(), "trace")...) {
		return &Command{Verb: v}, nil
	}
	if v == VerbDescribe && p.words[p.i] == "trace" {
		p.i++
		return p.end(&Command{Verb: v, Row: traceRow})
	}
	if v == VerbDescribe && topLevel[p.words[p.i]] == nil {
		// describe rule: a child type named alone, when one type has the word.
		var rows []*Row
		var where []string
		for _, r := range table {
			if r.Word == p.words[p.i] && len(r.parents()) > 0 {
				rows = append(rows, r)
				where = append(where, "describe "+r.parents()[0].Word+" "+r.Word)
			}
		}
		switch len(rows) {
		case 1:
			p.i++
			return p.end(&Command{Verb: v, Row: rows[0]})
		case 0:
		default:
			return nil, p.syntax(p.i, "several types are called "+p.words[p.i]+": "+strings.Join(where, ", "))
		}
	}
	if v == VerbShow && p.i < len(p.words) && p.words[p.i] == "ip" {
		return p.showIPNAT()
	}
	next := topWords()
	if v == VerbShow {
		next = append(next, "ip")
	}
	if p.eof(next...) {
		return nil, ErrIncomplete
	}
	mode := modeObject
	switch v {
	case VerbCreate:
		mode = modeCreate
	case VerbDescribe:
		mode = modeDescribe
	}
	path, err := p.pathFrom(nil, nil, mode)
	if err != nil {
		return nil, err
	}
	last := path[len(path)-1]
	c := &Command{Verb: v, Path: path}
	switch v {
	case VerbList:
		if last.ID != "" {
			// list OBJ VIEW: list host host0 flow
			if !p.eof(viewWords(last.Row)...) && last.Row.view(p.words[p.i]) != nil {
				c.View = last.Row.view(p.words[p.i])
				p.i++
				return p.end(c)
			}
			return p.end(&Command{Verb: VerbShow, Path: path})
		}
		c.Path, c.Row, c.Assigns = path[:len(path)-1], last.Row, last.Filter
		more, err := p.assigns(last.Row, false)
		c.Assigns = append(c.Assigns, more...)
		return c, err
	case VerbCreate:
		if !last.bare() {
			if p.i < len(p.words) {
				// "create router nme x": the ID step was a misspelt field.
				return nil, p.syntax(last.At+1, fieldHint(last.Row))
			}
			return nil, p.incomplete(last.Row.children)
		}
		c.Path, c.Row = path[:len(path)-1], last.Row
		c.Assigns, err = p.assigns(last.Row, true)
		return c, err
	case VerbDescribe:
		c.Row = last.Row
		if last.bare() {
			c.Path = path[:len(path)-1]
		}
		return p.end(c)
	}
	if last.bare() {
		return nil, p.incomplete(nil)
	}
	return p.objectVerb(c)
}

// afterPath parses the forms that start with an object path: OBJ VERB …,
// OBJ CHILD VERB …, OBJ FIELD show.
func (p *parser) afterPath(path []Step) (*Command, error) {
	last := path[len(path)-1]
	if last.bare() {
		if p.eof("list", "add", "describe") {
			return nil, ErrIncomplete
		}
	} else if p.eof(verbWords...) {
		return nil, ErrIncomplete
	}
	at := p.i
	w := p.words[at]
	v := verbOf(w)
	if v == 0 {
		// OBJ VIEW show|list
		if view := last.Row.view(w); view != nil && !last.bare() {
			p.i++
			if p.eof("show", "list") {
				return nil, ErrIncomplete
			}
			if v := verbOf(p.words[p.i]); v == VerbShow || v == VerbList {
				p.i++
				return p.end(&Command{Verb: v, Path: path, View: view})
			}
			return nil, p.syntax(p.i, "")
		}
		// OBJ FIELD show
		if !last.bare() && showable(last.Row, w) && p.i+1 < len(p.words) && verbOf(p.words[p.i+1]) == VerbShow {
			p.i += 2
			return p.end(&Command{Verb: VerbShow, Path: path, Fields: []string{w}})
		}
		return nil, p.syntax(at, "")
	}
	p.i++
	p.verbSeen = true
	c := &Command{Verb: v, Path: path}
	if last.bare() {
		// OBJ CHILD list [F V…] | OBJ CHILD add F V… | OBJ CHILD describe
		c.Path, c.Row = path[:len(path)-1], last.Row
		var err error
		switch v {
		case VerbList:
			c.Assigns, err = p.assigns(last.Row, false)
			return c, err
		case VerbCreate:
			c.Assigns, err = p.assigns(last.Row, true)
			return c, err
		case VerbDescribe:
			return p.end(c)
		}
		return nil, p.syntax(at, "name the "+last.Row.Word+" first: "+last.Row.Word+" ID "+w)
	}
	switch v {
	case VerbList, VerbCreate, VerbDescribe:
		// OBJ list CHILD [F V…] | OBJ list VIEW | OBJ add CHILD F V… | OBJ describe [CHILD]
		next := childWords(last.Row)
		if v == VerbList {
			next = append(next, viewWords(last.Row)...)
		}
		if p.eof(next...) {
			if v == VerbCreate {
				return nil, ErrIncomplete
			}
			if v == VerbList {
				c.Verb = VerbShow
			} else {
				c.Row = last.Row
			}
			return c, nil
		}
		if view := last.Row.view(p.words[p.i]); view != nil && v == VerbList {
			p.i++
			c.View = view
			return p.end(c)
		}
		child := last.Row.child(p.words[p.i])
		if child == nil {
			return nil, p.syntax(p.i, childHint(last.Row))
		}
		p.i++
		c.Row = child
		if v == VerbDescribe {
			return p.end(c)
		}
		var err error
		c.Assigns, err = p.assigns(child, v == VerbCreate)
		return c, err
	case VerbDelete:
		// OBJ delete | OBJ delete CHILD ID|FILTER
		if p.eof(childWords(last.Row)...) {
			return c, nil
		}
		if last.Row.child(p.words[p.i]) == nil {
			return nil, p.syntax(p.i, childHint(last.Row))
		}
		more, err := p.pathFrom(last.Row, path, modeObject)
		if err != nil {
			return nil, err
		}
		if more[len(more)-1].bare() {
			return nil, p.incomplete(nil)
		}
		c.Path = append(slices.Clone(path), more...)
		return p.end(c)
	}
	return p.objectVerb(c)
}

// objectVerb parses what follows show, set or clear once the object is known.
func (p *parser) objectVerb(c *Command) (*Command, error) {
	r := c.Path[len(c.Path)-1].Row
	switch c.Verb {
	case VerbShow:
		if p.eof(showWords(r)...) {
			return c, nil
		}
		if !showable(r, p.words[p.i]) {
			return nil, p.syntax(p.i, fieldHint(r))
		}
		if c.View = r.view(p.words[p.i]); c.View == nil {
			c.Fields = []string{p.words[p.i]}
		}
		p.i++
		return p.end(c)
	case VerbSet:
		var err error
		if c.Assigns, err = p.assigns(r, true); err == nil && len(c.Assigns) == 0 {
			err = ErrIncomplete
		}
		return c, err
	case VerbClear:
		for !p.eof(fieldWords(r)...) {
			w := p.words[p.i]
			fs := r.fieldsFor(w)
			if fs == nil {
				return nil, p.syntax(p.i, fieldHint(r))
			}
			if fs[0].ReadOnly {
				return nil, &UserError{Msg: w + " is read-only"}
			}
			c.Fields = append(c.Fields, w)
			p.i++
		}
		if len(c.Fields) == 0 {
			return nil, ErrIncomplete
		}
		return c, nil
	case VerbDelete:
		return p.end(c)
	}
	return nil, p.syntax(p.i-1, "")
}

// end accepts c if no words are left.
func (p *parser) end(c *Command) (*Command, error) {
	if p.i < len(p.words) {
		return nil, p.syntax(p.i, "")
	}
	return c, nil
}

// incomplete reports a missing continuation, offering children words.
func (p *parser) incomplete(children []*Row) error {
	if p.i < len(p.words) {
		return p.syntax(p.i, "")
	}
	for _, c := range children {
		p.eof(c.Word)
	}
	return ErrIncomplete
}

// pathFrom parses steps whose first type word is a child of parent (or a
// top-level word when parent is nil); above are the steps already parsed,
// which completion needs to list aliases.
func (p *parser) pathFrom(parent *Row, above []Step, mode pathMode) ([]Step, error) {
	var steps []Step
	cur := parent
	for {
		var cands []string
		if cur == nil {
			cands = topWords()
		} else {
			cands = childWords(cur)
		}
		if p.eof(cands...) {
			return nil, ErrIncomplete
		}
		var r *Row
		if cur == nil {
			r = topLevel[p.words[p.i]]
		} else {
			r = cur.child(p.words[p.i])
		}
		if r == nil {
			return nil, p.syntax(p.i, "")
		}
		st := Step{Row: r, At: p.i}
		p.i++
		all := append(slices.Clone(above), steps...)
		// What may follow the type word.
		if r.Prefix != "" {
			p.offerAliases(r, all, false)
		}
		if mode == modeValue {
			if p.eof() {
				return nil, ErrIncomplete
			}
		} else if p.eof(slices.Concat(p.verbOffers(), fieldWords(r))...) {
			return append(steps, st), nil
		}
		w := p.words[p.i]
		switch {
		case mode != modeValue && verbOf(w) != 0,
			mode == modeCreate && r.fieldsFor(w) != nil:
			return append(steps, st), nil
		case mode == modeDescribe && r.child(w) != nil:
			steps = append(steps, st)
			cur = r
			continue
		case r.Prefix == "" || r.fieldsFor(w) != nil:
			if mode == modeValue {
				return nil, p.syntax(p.i, r.Word+" objects have no alias and cannot be referred to")
			}
			stop := func(w string) bool { return r.fieldsFor(w) != nil || verbOf(w) != 0 || r.child(w) != nil }
			a, err := p.assign(r, false, stop)
			if err != nil {
				return nil, err
			}
			st.Filter = []Assign{a}
		default:
			st.ID = w
			p.i++
		}
		steps = append(steps, st)
		var next []string
		if mode != modeValue && !p.verbSeen {
			next = slices.Concat(verbWords, showWords(r))
		}
		if p.eof(slices.Concat(next, childWords(r))...) || r.child(p.words[p.i]) == nil {
			return steps, nil
		}
		cur = r
	}
}

// assigns parses FIELD VALUE pairs to the end of the line.
func (p *parser) assigns(r *Row, write bool) ([]Assign, error) {
	var out []Assign
	stop := func(w string) bool { return r.fieldsFor(w) != nil }
	for !p.eof(unusedFields(r, out)...) {
		a, err := p.assign(r, write, stop)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// assign parses one FIELD VALUE pair. The first value word is always the
// value, even if it looks like a field word (name "state"); further words
// join a string value until stop says a new field (or step) begins, which
// is what lets "name MidoNet Provider Router" go unquoted.
func (p *parser) assign(r *Row, write bool, stop func(string) bool) (Assign, error) {
	w := p.words[p.i]
	fs := r.fieldsFor(w)
	if fs == nil {
		return Assign{}, p.syntax(p.i, fieldHint(r))
	}
	f := fs[0]
	if write && f.ReadOnly {
		return Assign{}, &UserError{Msg: w + " is read-only: the server sets it"}
	}
	a := Assign{At: p.i, Word: w, Fields: fs}
	p.i++
	if r.Flags && f.Type.Kind() == reflect.Bool && (p.eof(valueWords(f)...) || !isBoolWord(p.words[p.i])) {
		a.Text, a.JSON = "true", json.RawMessage("true")
		if p.i < len(p.words) && !stop(p.words[p.i]) {
			return a, p.syntax(p.i, fieldHint(r))
		}
		return a, nil
	}
	if p.eof(valueWords(f)...) {
		if f.Ref != "" {
			p.offerAliases(rowForRef(f), nil, true)
		}
		return a, ErrIncomplete
	}
	v := p.words[p.i]
	if strings.HasPrefix(v, "!") {
		if f.Inv == "" {
			return a, p.syntax(p.i, w+" cannot be negated")
		}
		a.Neg = true
		if v = v[1:]; v == "" {
			p.i++
			if p.eof(valueWords(f)...) {
				return a, ErrIncomplete
			}
			v = p.words[p.i]
		}
	}
	at := p.i
	if f.Ref != "" {
		if topLevel[v] != nil && !strings.Contains(v, ",") {
			path, err := p.pathFrom(nil, nil, modeValue)
			if err != nil {
				return a, err
			}
			a.Refs, a.Text = []Ref{{At: at, Path: path}}, strings.Join(p.words[at:p.i], " ")
		} else {
			for _, e := range strings.Split(v, ",") {
				if e == "" {
					return a, p.syntax(at, w+": empty element in the list")
				}
				a.Refs = append(a.Refs, Ref{At: at, Word: e})
			}
			if len(a.Refs) > 1 && !f.IsList() {
				return a, p.syntax(at, w+" takes one value")
			}
			a.Text = v
			p.i++
		}
	} else {
		words := []string{v}
		p.i++
		if f.Type.Kind() == reflect.String && len(f.Enum) == 0 {
			for p.i < len(p.words) && !stop(p.words[p.i]) {
				words = append(words, p.words[p.i])
				p.i++
			}
		}
		a.Text = strings.Join(words, " ")
		raw, err := parseValue(f, a.Text)
		if err != nil {
			return a, p.syntax(at, err.Error())
		}
		a.JSON = raw
	}
	if p.i < len(p.words) && !stop(p.words[p.i]) {
		return a, p.syntax(p.i, fieldHint(r))
	}
	return a, nil
}

func isBoolWord(w string) bool { return w == "true" || w == "false" || w == "yes" || w == "no" }

// showable reports whether w can follow show: any field word (read-only
// and hidden ones included), a computed column, a view, or id.
func showable(r *Row, w string) bool {
	if w == "id" && r.Prefix != "" {
		return true
	}
	if r.column(w) != nil || r.view(w) != nil {
		return true
	}
	_, ok := r.byWord[w]
	return ok
}

func topWords() []string {
	var out []string
	for _, r := range table {
		if r.TopLevel {
			out = append(out, r.Word)
		}
	}
	return out
}

func childWords(r *Row) []string {
	var out []string
	for _, c := range r.children {
		out = append(out, c.Word)
	}
	return out
}

func fieldWords(r *Row) []string {
	var out []string
	for _, f := range r.fields {
		if !slices.Contains(out, f.CLI) {
			out = append(out, f.CLI)
		}
	}
	return out
}

func showWords(r *Row) []string {
	out := fieldWords(r)
	for _, c := range r.Columns {
		out = append(out, c.Word)
	}
	if r.Prefix != "" {
		out = append(out, "id")
	}
	return append(out, viewWords(r)...)
}

// unusedFields are the field words not yet given; two words for one field
// (trace's port and in-port) are both used once either is.
func unusedFields(r *Row, used []Assign) []string {
	var out []string
	for _, f := range r.fields {
		if !slices.Contains(out, f.CLI) && !slices.ContainsFunc(used, func(a Assign) bool { return a.Word == f.CLI || a.Fields[0].JSON == f.JSON }) {
			out = append(out, f.CLI)
		}
	}
	return out
}

// valueWords are the values completion offers for a field.
func valueWords(f *model.Field) []string {
	if len(f.Enum) > 0 {
		return f.Enum
	}
	if f.Type.Kind() == reflect.Bool {
		return []string{"true", "false"}
	}
	if f.Ref != "" {
		if r := rowForRef(f); r != nil && r.TopLevel {
			return []string{r.Word}
		}
	}
	return nil
}

func fieldHint(r *Row) string {
	ws := fieldWords(r)
	if len(ws) == 0 {
		return r.Word + " has no fields"
	}
	return r.Word + " fields: " + strings.Join(ws, " ")
}

func childHint(r *Row) string {
	ws := childWords(r)
	if len(ws) == 0 {
		return r.Word + " has no child objects"
	}
	return r.Word + " children: " + strings.Join(ws, " ")
}

// showIPNAT parses Cisco's `show ip nat translations [router OBJ]` (after
// "show"): the router's NAT view, or every router's when none is named.
func (p *parser) showIPNAT() (*Command, error) {
	p.i++ // "ip"
	for _, w := range []string{"nat", "translations"} {
		if p.eof(w) {
			return nil, ErrIncomplete
		}
		if p.words[p.i] != w {
			return nil, p.syntax(p.i, "show ip nat translations [router ROUTER]")
		}
		p.i++
	}
	router := rowsByName["router"]
	c := &Command{Verb: VerbShow, View: router.view("nat")}
	if p.eof(router.Word) {
		return c, nil
	}
	if p.words[p.i] != router.Word {
		return nil, p.syntax(p.i, "show ip nat translations [router ROUTER]")
	}
	path, err := p.pathFrom(nil, nil, modeValue)
	if err != nil {
		return nil, err
	}
	c.Path = path
	return p.end(c)
}
