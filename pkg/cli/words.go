package cli

import (
	"slices"
	"strings"
)

// The words the grammar accepts at a point (for completion) and the hints
// a syntax error gives.

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
