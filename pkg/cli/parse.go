package cli

import (
	"slices"
	"strings"
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
	case VerbRevoke:
		if r.Kind == nil || r.Kind.Name != "host" {
			return nil, &UserError{Msg: "only a host can be revoked"}
		}
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
