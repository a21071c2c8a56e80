// Package model is Nagare's native virtual topology: the object types, their
// schema and their validation. It does no I/O.
//
// The schema is read once, by reflection, from the struct tags in types.go, so
// a field is declared in exactly one place and the API's decoder, its
// validation, its OpenAPI document, the store's referential integrity and the
// CLI's grammar all follow from that declaration. The `nagare` tag is a comma
// list of:
//
//	cli=NAME          word the CLI uses for the field (default: none)
//	nocli             not settable from the CLI (e.g. inversion flags)
//	ref=KIND          the value is the id (or list of ids) of a KIND object
//	ondelete=P        what deleting the referenced object does to this one:
//	                  restrict (refuse, 409), cascade (delete this too) or
//	                  nullify (clear the field / drop the id from the list)
//	parent            the ref names the owner; CLI aliases count per parent
//	required          must be set on create
//	ro                set by the server only
//	derived           not stored; computed on read (e.g. a host's liveness)
//	secret            write-only: stored, never returned by the API nor
//	                  filtered on (a BGP peer's password)
//	unique[=FIELD]    no two objects of the kind share the value (within the
//	                  same value of FIELD, when given)
//	enum=A|B          allowed values
//	default=V         applied on create when the field is unset
//	min=N, max=N      numeric bounds
//	inv=JSON          the bool field that negates this condition
//	doc=TEXT          one-line description (must be last: may contain commas)
package model

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/packet"
)

// RefPolicy says what happens to a referrer when its target is deleted.
type RefPolicy int

const (
	Restrict RefPolicy = iota
	Cascade
	Nullify
)

func (p RefPolicy) String() string {
	return [...]string{"restrict", "cascade", "nullify"}[p]
}

// Field is one field of a kind.
type Field struct {
	JSON     string // API name
	CLI      string // CLI word; empty when the CLI cannot set it
	Doc      string
	Index    []int // reflect index path into the struct
	Type     reflect.Type
	Ref      string // target kind name, for ids and id lists
	OnDelete RefPolicy
	Parent   bool
	Required bool
	ReadOnly bool
	Derived  bool
	Secret   bool
	Unique   bool
	Scope    string // json name of the field that scopes uniqueness
	Enum     []string
	Default  string
	Min, Max *int64
	Inv      string // json name of the negation flag
	NoCLI    bool
}

// IsList reports whether the field holds a list.
func (f *Field) IsList() bool { return f.Type.Kind() == reflect.Slice }

// Value returns the field of o (o must be a pointer to the kind's struct).
func (f *Field) Value(o Object) reflect.Value {
	return reflect.ValueOf(o).Elem().FieldByIndex(f.Index)
}

// RefIDs returns the ids a ref field of o holds (none when unset).
func (f *Field) RefIDs(o Object) []string {
	v := f.Value(o)
	if f.IsList() {
		return v.Interface().([]string)
	}
	if s := v.String(); s != "" {
		return []string{s}
	}
	return nil
}

// Kind is one object type of the native topology.
type Kind struct {
	Name   string // singular, CLI word: "bridge", "tunnel-zone"
	Plural string // API collection: "bridges", "tunnel-zones"
	Doc    string
	Fields []*Field
	typ    reflect.Type
	byJSON map[string]*Field

	// Check validates rules that span several fields of one object. It runs
	// after the per-field checks, on a fully defaulted object.
	Check func(Object) error

	// Internal kinds are stored with the same schema rules but are not part
	// of the virtual topology: the native API does not serve them and the
	// store keeps them apart from the objects agents watch (Neutron's
	// objects, identity's users and projects). See RegisterInternal.
	Internal bool
}

// New returns a new zero object of the kind.
func (k *Kind) New() Object { return reflect.New(k.typ).Interface().(Object) }

// Field looks a field up by its JSON name.
func (k *Kind) Field(json string) *Field { return k.byJSON[json] }

// Refs lists the fields that reference other objects.
func (k *Kind) Refs() []*Field {
	var out []*Field
	for _, f := range k.Fields {
		if f.Ref != "" {
			out = append(out, f)
		}
	}
	return out
}

// ParentFields lists the fields that name the owner (a port has two, only one set).
func (k *Kind) ParentFields() []*Field {
	var out []*Field
	for _, f := range k.Fields {
		if f.Parent {
			out = append(out, f)
		}
	}
	return out
}

// Uniques lists the fields whose values must be unique.
func (k *Kind) Uniques() []*Field {
	var out []*Field
	for _, f := range k.Fields {
		if f.Unique {
			out = append(out, f)
		}
	}
	return out
}

var (
	kinds       []*Kind
	kindsByName = map[string]*Kind{}
	kindsByType = map[reflect.Type]*Kind{}
)

// Kinds returns all kinds in declaration order.
func Kinds() []*Kind { return kinds }

// KindByName finds a kind by its singular name or its plural.
func KindByName(name string) *Kind { return kindsByName[name] }

// KindOf returns the kind of an object.
func KindOf(o Object) *Kind { return kindsByType[reflect.TypeOf(o).Elem()] }

// RegisterInternal declares a kind outside the native topology (see
// Kind.Internal), for packages that keep their own objects in the NSDB under
// the same schema rules: `nagare` tags for references, uniqueness and
// on-delete policies. name and plural must not collide with another kind's;
// call it from a package-level var so it runs before the store is used.
func RegisterInternal(name, plural, doc string, proto Object, check func(Object) error) *Kind {
	if kindsByName[name] != nil || kindsByName[plural] != nil {
		panic("model: kind " + name + " (" + plural + ") registered twice")
	}
	k := register(name, plural, doc, proto, check)
	k.Internal = true
	return k
}

func register(name, plural, doc string, proto Object, check func(Object) error) *Kind {
	t := reflect.TypeOf(proto).Elem()
	k := &Kind{Name: name, Plural: plural, Doc: doc, typ: t, byJSON: map[string]*Field{}, Check: check}
	k.Fields = fieldsOf(t, nil)
	for _, f := range k.Fields {
		k.byJSON[f.JSON] = f
	}
	for _, f := range k.Fields {
		if f.Scope != "" && k.byJSON[f.Scope] == nil {
			panic(fmt.Sprintf("model: %s.%s scoped by unknown field %s", name, f.JSON, f.Scope))
		}
		if f.Inv != "" && k.byJSON[f.Inv] == nil {
			panic(fmt.Sprintf("model: %s.%s negated by unknown field %s", name, f.JSON, f.Inv))
		}
	}
	kinds = append(kinds, k)
	kindsByName[name], kindsByName[plural], kindsByType[t] = k, k, k
	return k
}

func fieldsOf(t reflect.Type, index []int) []*Field {
	var out []*Field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		idx := append(append([]int(nil), index...), i)
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct && sf.Tag.Get("json") == "" {
			out = append(out, fieldsOf(sf.Type, idx)...)
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		f := &Field{JSON: name, Index: idx, Type: sf.Type}
		parseTag(f, sf.Tag.Get("nagare"))
		out = append(out, f)
	}
	return out
}

func parseTag(f *Field, tag string) {
	for tag != "" {
		var item string
		if strings.HasPrefix(tag, "doc=") {
			item, tag = tag, ""
		} else {
			item, tag, _ = strings.Cut(tag, ",")
		}
		key, val, _ := strings.Cut(item, "=")
		switch key {
		case "cli":
			f.CLI = val
		case "nocli":
			f.NoCLI = true
		case "ref":
			f.Ref = val
		case "ondelete":
			f.OnDelete = map[string]RefPolicy{"restrict": Restrict, "cascade": Cascade, "nullify": Nullify}[val]
		case "parent":
			f.Parent = true
		case "required":
			f.Required = true
		case "ro":
			f.ReadOnly = true
		case "derived":
			f.Derived, f.ReadOnly = true, true
		case "secret":
			f.Secret = true
		case "unique":
			f.Unique, f.Scope = true, val
		case "enum":
			f.Enum = strings.Split(val, "|")
		case "default":
			f.Default = val
		case "min", "max":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				panic("model: bad " + key + " in tag of " + f.JSON)
			}
			if key == "min" {
				f.Min = &n
			} else {
				f.Max = &n
			}
		case "inv":
			f.Inv = val
		case "doc":
			f.Doc = val
		default:
			panic("model: unknown tag item " + item + " on " + f.JSON)
		}
	}
}

// FieldError is a validation failure that names the offending field, so the
// API can answer 400 with the field and the CLI can point at the word.
type FieldError struct {
	Field string
	Msg   string
	// Missing: the field names an object that does not exist. The error
	// then also matches ErrNotFound, so a URL naming that object can
	// answer 404 where a body naming it answers 400.
	Missing bool
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Unwrap makes a FieldError about a missing object match ErrNotFound.
func (e *FieldError) Unwrap() error {
	if e.Missing {
		return ErrNotFound
	}
	return nil
}

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Decode applies a JSON object of field values onto o. Unknown fields and
// read-only fields are refused (except id when allowID, and revision, which
// callers read separately as a precondition). Every error names the field.
// On error o may be partly modified; callers decode into a copy.
func Decode(k *Kind, data []byte, o Object, allowID bool) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return &FieldError{Field: "body", Msg: "malformed JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	if raw == nil {
		return &FieldError{Field: "body", Msg: "expected a JSON object"}
	}
	names := make([]string, 0, len(raw))
	for n := range raw {
		names = append(names, n)
	}
	sort.Strings(names) // deterministic: the first bad field is always the same one
	for _, n := range names {
		f := k.byJSON[n]
		switch {
		case f == nil:
			if n == "" {
				n = `""`
			}
			return fieldErr(n, "unknown field for %s", k.Name)
		case n == "revision":
			continue
		case n == "id" && allowID:
		case f.ReadOnly:
			return fieldErr(n, "is read-only")
		}
		dst := f.Value(o)
		if string(raw[n]) == "null" {
			dst.Set(reflect.Zero(f.Type))
			continue
		}
		if err := json.Unmarshal(raw[n], dst.Addr().Interface()); err != nil {
			return fieldErr(n, "%s", describeJSONError(f, err))
		}
	}
	return nil
}

func describeJSONError(f *Field, err error) string {
	if te, ok := err.(*json.UnmarshalTypeError); ok {
		return fmt.Sprintf("expected %s, got JSON %s", typeWord(f.Type), te.Value)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	// netip says `netip.ParsePrefix("10.0.0.0/33"): prefix length out of
	// range`; an operator wants the value and the reason, not the function.
	rest, ok := strings.CutPrefix(msg, "netip.Parse")
	if !ok {
		rest, ok = strings.CutPrefix(msg, "Parse")
	}
	if ok {
		if open := strings.Index(rest, "("); open >= 0 {
			if end := strings.Index(rest, "): "); end > open {
				return fmt.Sprintf("%s is not %s: %s", rest[open+1:end], typeWord(elemType(f.Type)), rest[end+3:])
			}
		}
	}
	return msg
}

func elemType(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Slice {
		return t.Elem()
	}
	return t
}

func typeWord(t reflect.Type) string {
	switch t {
	case reflect.TypeOf(netip.Addr{}):
		return "an IP address"
	case reflect.TypeOf(netip.Prefix{}):
		return "a CIDR prefix"
	case reflect.TypeOf(packet.MAC{}):
		return "a MAC address"
	}
	switch t.Kind() {
	case reflect.Slice:
		return "a list of " + typeWord(t.Elem())
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("an integer 0..%d", uint64(1)<<(t.Bits())-1)
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	}
	return "a " + t.Name()
}

// ApplyDefaults sets declared defaults on unset fields, and kind-specific
// derived defaults (a route's source prefix, a DHCP server address).
func ApplyDefaults(o Object) {
	k := KindOf(o)
	for _, f := range k.Fields {
		if f.Default == "" {
			continue
		}
		v := f.Value(o)
		if !v.IsZero() {
			continue
		}
		switch v.Kind() {
		case reflect.String:
			v.SetString(f.Default)
		case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			n, _ := strconv.ParseUint(f.Default, 10, 64)
			v.SetUint(n)
		case reflect.Int, reflect.Int64:
			n, _ := strconv.ParseInt(f.Default, 10, 64)
			v.SetInt(n)
		}
	}
	normalize(o)
}

// Validate checks o field by field and then as a whole. It needs no store;
// references are checked for form here and for existence by the store.
func Validate(o Object) error {
	k := KindOf(o)
	for _, f := range k.Fields {
		if err := validateField(f, f.Value(o)); err != nil {
			return err
		}
	}
	if m := o.GetMeta(); m.ID != "" && !IsUUID(m.ID) {
		return fieldErr("id", "%q is not a UUID", m.ID)
	}
	if k.Check != nil {
		return k.Check(o)
	}
	return nil
}

func validateField(f *Field, v reflect.Value) error {
	if f.Required && v.IsZero() && !f.ReadOnly {
		return fieldErr(f.JSON, "is required")
	}
	if f.Ref != "" {
		seen := map[string]bool{}
		for _, id := range refStrings(v) {
			if !IsUUID(id) {
				return fieldErr(f.JSON, "%q is not a UUID of a %s", id, f.Ref)
			}
			if seen[id] {
				return fieldErr(f.JSON, "lists %s twice", id)
			}
			seen[id] = true
		}
	}
	if len(f.Enum) > 0 && v.Kind() == reflect.String && v.String() != "" {
		ok := false
		for _, e := range f.Enum {
			ok = ok || e == v.String()
		}
		if !ok {
			return fieldErr(f.JSON, "%q is not one of %s", v.String(), strings.Join(f.Enum, ", "))
		}
	}
	var n int64
	switch v.Kind() {
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n = int64(v.Uint())
	case reflect.Int, reflect.Int64, reflect.Int32:
		n = v.Int()
	default:
		return validateValue(f, v)
	}
	if f.Min != nil && n < *f.Min && !(n == 0 && !f.Required && f.Default == "") {
		return fieldErr(f.JSON, "%d is below the minimum %d", n, *f.Min)
	}
	if f.Max != nil && n > *f.Max {
		return fieldErr(f.JSON, "%d is above the maximum %d", n, *f.Max)
	}
	return nil
}

// validateValue rejects zero-valued elements in address lists and addresses
// with zones, which have no meaning in a virtual topology.
func validateValue(f *Field, v reflect.Value) error {
	switch x := v.Interface().(type) {
	case netip.Addr:
		if x.Zone() != "" {
			return fieldErr(f.JSON, "%s: zoned addresses are not allowed", x)
		}
	case []netip.Addr:
		for _, a := range x {
			if !a.IsValid() || a.Zone() != "" {
				return fieldErr(f.JSON, "%q is not a valid address", a)
			}
		}
	case netip.Prefix:
		if x.IsValid() && x.Addr().Zone() != "" {
			return fieldErr(f.JSON, "%s: zoned prefixes are not allowed", x)
		}
	}
	return nil
}

func refStrings(v reflect.Value) []string {
	if v.Kind() == reflect.Slice {
		return v.Interface().([]string)
	}
	if s := v.String(); s != "" {
		return []string{s}
	}
	return nil
}

// IsUUID reports whether s is a UUID in canonical lower-case 8-4-4-4-12 form.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
				return false
			}
		}
	}
	return true
}

// Text renders a scalar field of o the way the store keys unique values and
// the CLI prints it: strings as is, numbers in decimal, addresses, prefixes
// and MACs in their canonical text form.
func (f *Field) Text(o Object) string { return ValueText(f.Value(o)) }

// ValueText renders any schema value (scalar or list) in its text form.
func ValueText(v reflect.Value) string {
	if tm, ok := v.Interface().(interface{ MarshalText() ([]byte, error) }); ok {
		b, _ := tm.MarshalText()
		return string(b)
	}
	switch v.Kind() {
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = ValueText(v.Index(i))
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v.Interface())
}
