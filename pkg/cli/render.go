package cli

import (
	"fmt"
	"io"
	"reflect"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// line renders an object the way midonet-cli did: "TYPE ALIAS field value
// …" with only the fields that have a value, in schema order, references as
// aliases and ids hidden. The owner is omitted (the alias or the listing
// already names it), except on id-less objects, whose line is all that
// identifies them ("zone tzone0 host host0 address …"). short picks the
// alias among siblings ("port0") over the composed one ("router0:port0").
func (s *session) line(o *object, short bool) (string, error) {
	var parts []string
	if o.row.Prefix != "" {
		a, err := s.alias(o)
		if short {
			a, err = s.shortAlias(o)
		}
		if err != nil {
			return "", err
		}
		parts = append(parts, o.row.Print, a)
	}
	columns := func(after string) {
		for _, c := range o.row.Columns {
			if c.After != after {
				continue
			}
			if v := c.Value(s, o); v != "" {
				parts = append(parts, c.Word, v)
			}
		}
	}
	columns("")
	owner := ownerField(o)
	for _, f := range o.row.fields {
		if show := !o.row.hidden(f.JSON) && (f != owner || showParent(o.row, f)); show {
			if text, ok := s.fieldText(o, f); ok {
				parts = append(parts, f.CLI, text)
			}
		}
		columns(f.JSON)
	}
	return strings.Join(parts, " "), nil
}

// ownerField is the parent field that names o's owner (the one its alias
// counts under); other parent fields (a BGP peer's port) are shown like
// any reference.
func ownerField(o *object) *model.Field {
	for _, f := range o.row.Fields {
		if f.Parent && o.str(f.JSON) != "" {
			return f
		}
	}
	return nil
}

// showParent reports whether an owner field appears on the line: only for
// id-less objects, and only when the owner has an alias to print.
func showParent(r *Row, f *model.Field) bool {
	pr := rowForRef(f)
	return r.Prefix == "" && pr != nil && pr.Prefix != ""
}

// fieldText renders one field of o, references as aliases and negated
// conditions with a "!" prefix. ok is false when the field has no value.
func (s *session) fieldText(o *object, f *model.Field) (string, bool) {
	var text string
	if f.Ref != "" {
		ids := o.refIDs(f)
		if len(ids) == 0 {
			return "", false
		}
		names := make([]string, len(ids))
		for i, id := range ids {
			names[i] = s.refText(rowForRef(f), id)
		}
		text = strings.Join(names, ",")
	} else {
		var ok bool
		if text, ok = rawText(f, o.raw[f.JSON]); !ok {
			return "", false
		}
	}
	if f.Inv != "" && o.has(f.Inv) {
		text = "!" + text
	}
	return text, true
}

// printLines prints lines with the ids in them replaced by aliases.
func (e *Engine) printLines(s *session, lines []string) error {
	rep := s.aliaser(lines)
	for _, l := range lines {
		if _, err := fmt.Fprintln(e.Out, rep.Replace(l)); err != nil {
			return err
		}
	}
	return nil
}

func (e *Engine) describe(c *Command) error {
	if c.Row == nil {
		describeAll(e.Out)
		return nil
	}
	describeRow(e.Out, c.Row)
	return nil
}

func describeAll(w io.Writer) {
	fmt.Fprintln(w, "Object types (describe TYPE for fields and children):")
	for _, r := range table {
		if r.TopLevel {
			fmt.Fprintf(w, "  %-18s %s\n", r.Word, r.Kind.Doc)
		}
	}
}

func describeRow(w io.Writer, r *Row) {
	if r == traceRow {
		fmt.Fprintf(w, "trace: %s\n  trace port bridge0:port0 src 10.0.0.5 dst 10.0.1.5 [proto tcp dst-port 22 …]\n", traceDoc)
		describeFields(w, r)
		return
	}
	doc := ""
	if r.Kind != nil {
		doc = r.Kind.Doc
	} else if r.Key != "" {
		doc = "A " + r.Word + ", named by its " + r.field(r.Key).CLI + "."
	}
	fmt.Fprintf(w, "%s: %s\n", r.Word, doc)
	if r.Prefix != "" {
		fmt.Fprintf(w, "  aliases: %s0, %s1, … (index among siblings in creation order)\n", r.Prefix, r.Prefix)
	} else {
		fmt.Fprintf(w, "  no aliases: name one with a field, e.g. %s %s VALUE\n", r.Word, idlessKey(r))
	}
	if ps := r.parents(); len(ps) > 0 {
		fmt.Fprintf(w, "  below: %s\n", parentWords(r))
	}
	if len(r.children) > 0 {
		fmt.Fprintf(w, "  children: %s\n", strings.Join(childWords(r), " "))
	}
	for _, v := range r.Views {
		fmt.Fprintf(w, "  view %s: %s\n", v.Word, v.Doc)
	}
	describeFields(w, r)
}

// describeFields lists a row's field words with their values and notes.
func describeFields(w io.Writer, r *Row) {
	fmt.Fprintln(w, "  fields:")
	for _, c := range r.Columns {
		if r.byWord[c.Word] == nil {
			fmt.Fprintf(w, "    %-22s %s\n", c.Word, "computed, read-only")
		}
	}
	for _, word := range fieldWords(r) {
		fs := r.fieldsFor(word)
		f := fs[0]
		var notes []string
		if f.Required {
			notes = append(notes, "required")
		}
		if f.ReadOnly {
			notes = append(notes, "read-only")
		}
		if f.Default != "" {
			notes = append(notes, "default "+f.Default)
		}
		if f.Inv != "" {
			notes = append(notes, "!negatable")
		}
		if f.Parent {
			notes = append(notes, "owner")
		}
		line := typeWord(f, f.Type)
		if len(fs) > 1 {
			line = wantWords(fs) + " (alias, UUID or typed path)"
		}
		if len(notes) > 0 {
			line += " (" + strings.Join(notes, ", ") + ")"
		}
		if f.Doc != "" && len(fs) == 1 {
			line += ": " + f.Doc
		}
		fmt.Fprintf(w, "    %-22s %s\n", word, line)
	}
}

// idlessKey is the field that usually names an id-less object: its
// unique-within-parent field, or its first non-owner field.
func idlessKey(r *Row) string {
	if r.Key != "" {
		return r.field(r.Key).CLI
	}
	for _, f := range r.fields {
		if f.Unique && !f.Parent {
			return f.CLI
		}
	}
	for _, f := range r.fields {
		if !f.Parent && f.Type.Kind() != reflect.Bool {
			return f.CLI
		}
	}
	return "FIELD"
}
