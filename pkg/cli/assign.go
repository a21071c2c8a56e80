package cli

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// FIELD VALUE pairs: how a command's assignments are read, and which
// values completion offers for them.

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
