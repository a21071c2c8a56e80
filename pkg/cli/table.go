package cli

import (
	"fmt"
	"reflect"
	"slices"

	"github.com/nagare/nagare/pkg/model"
)

// Row is one object type of the CLI. It adds presentation only: the words,
// the alias prefix and the tree of child collections. Field words, value
// types, enums, references and which field names the owner all come from the
// model schema of Kind, so a new model field needs no CLI change and a new
// object type is one more row in table.
type Row struct {
	// Name is the row's key in Children lists; it defaults to Kind.Name.
	Name string
	// Word is the CLI type word ("tunnel-zone", "member"); defaults to Name.
	// Child words only need to be unique among one parent's children.
	Word string
	// Kind is the model kind the row shows. Bindings have none: they are a
	// view of a port's host and interface fields with their own endpoint.
	Kind *model.Kind
	// Prefix makes aliases (prefix + index among siblings). Empty means the
	// objects are id-less to the CLI: they are named by filter steps
	// ("dhcp subnet 10.0.0.0/24") and print no alias.
	Prefix string
	// Print starts output lines; defaults to Word ("tzone" for tunnel zones).
	Print string
	// TopLevel rows can start an object path and be listed on their own.
	TopLevel bool
	// Children names the rows reachable below this one.
	Children []string
	// Columns are computed values shown between the schema's fields.
	Columns []Column
	// Hide lists fields (JSON names) left out of object lines; `show OBJ
	// FIELD` still prints them.
	Hide []string

	// Views are read-only state the API serves below an object that is not
	// an object itself (a host's datapath).
	Views []View

	// Fields overrides the kind's fields (bindings, trace).
	Fields []*model.Field
	// Flags lets a bool field word stand alone for true ("trace … df").
	Flags bool
	// Nested is the collection below the parent's URL that lists, creates
	// and deletes these objects (/hosts/{id}/bindings); Key is the field
	// whose value names one of them in the DELETE URL. Rows without Nested
	// use the kind's flat collection.
	Nested, Key string

	children []*Row
	fields   []*model.Field // the fields the CLI knows, schema order
	byWord   map[string][]*model.Field
}

// View is state the API keeps below an object's URL and the CLI prints in
// lines of its own: `host host0 show datapath` (or `host host0 datapath
// show`), `host host0 list flow` (or `host host0 flow list`). show and list
// print the same thing; the word decides which reads better.
type View struct {
	Word string
	Path string // below the object's URL: /hosts/{id}/datapath
	Doc  string
	// Missing is the user error when the API has no such state (404); %s
	// is the object's alias.
	Missing string
	// Render turns the API's answer into lines, ids not yet replaced by
	// aliases, and picks what -o json prints.
	Render func(body []byte) (lines []string, js any, err error)
}

// Column is a value the API does not store as such but operators expect on
// an object's line: a port's device and whether it is plugged.
type Column struct {
	Word  string
	After string // JSON name of the field it follows; "" puts it first
	Value func(s *session, o *object) string
}

// table is the CLI. Order matters only for describe and completion. It is
// filled in init because computed columns call back into the engine, which
// reads the table (a package-level initializer would be a cycle).
var table []*Row

func init() {
	table = []*Row{
		{Kind: model.RouterKind, Prefix: "router", TopLevel: true, Children: []string{"port", "route", "bgp-peer", "bgp-network"}, Views: routerViews},
		{Kind: model.BridgeKind, Prefix: "bridge", TopLevel: true, Children: []string{"port", "dhcp-subnet"}},
		{Kind: model.PortKind, Prefix: "port", TopLevel: true, Children: []string{"bgp-peer"},
			Columns: []Column{
				{Word: "device", Value: func(s *session, o *object) string { return s.parentAlias(o) }},
				{Word: "plugged", After: "state", Value: func(_ *session, o *object) string { return yesNo(o.has("host_id")) }},
			},
			// The tunnel key is an implementation detail of the datapath; show
			// it with `port X show tunnel-key` when debugging encapsulation.
			Hide: []string{"tunnel_key"}},
		{Kind: model.RouteKind, Prefix: "route"},
		// A BGP peer belongs to its router and to the port it speaks on:
		// `router router0 port port1 add bgp-peer asn 65001 address
		// 198.51.100.1`, `router router0 list bgp-peer`. Its alias counts
		// among the router's peers (router0:peer0).
		{Kind: model.BGPPeerKind, Prefix: "peer"},
		{Kind: model.BGPNetworkKind, Prefix: "bgpnet"},
		{Kind: model.ChainKind, Prefix: "chain", TopLevel: true, Children: []string{"rule"}},
		{Kind: model.RuleKind, Prefix: "rule"},
		{Kind: model.HostKind, Prefix: "host", TopLevel: true, Children: []string{"binding"}, Views: hostViews},
		{Name: "binding", Fields: bindingFields(), Nested: "bindings", Key: "interface_name"},
		{Kind: model.TunnelZoneKind, Prefix: "tzone", Print: "tzone", TopLevel: true, Children: []string{"tunnel-zone-member"}},
		{Kind: model.TunnelZoneMemberKind, Word: "member"},
		{Kind: model.DHCPSubnetKind, Word: "dhcp", Children: []string{"dhcp-host"}},
		{Kind: model.DHCPHostKind, Word: "host"},
		{Kind: model.PortGroupKind, Prefix: "pgroup", TopLevel: true, Children: []string{"port-group-member"}},
		{Kind: model.PortGroupMemberKind, Word: "member"},
		{Kind: model.IPAddrGroupKind, Prefix: "ipg", TopLevel: true, Children: []string{"ip-address-group-address"}},
		{Kind: model.IPAddrGroupAddrKind, Word: "address"},
		{Kind: model.LoadBalancerKind, Prefix: "lb", TopLevel: true, Children: []string{"pool", "vip"}},
		// Pools and VIPs are also top-level, named by composed alias
		// (pool lb0:pool0 add member …), as ports are.
		{Kind: model.PoolKind, Prefix: "pool", TopLevel: true, Children: []string{"pool-member"}},
		{Kind: model.PoolMemberKind, Word: "member", Prefix: "pm"},
		{Kind: model.VIPKind, Prefix: "vip", TopLevel: true},
		{Kind: model.HealthMonitorKind, Prefix: "hm", TopLevel: true},
		{Kind: model.QoSPolicyKind, Prefix: "qos", TopLevel: true},
	}
	index()
}

// bindingFields describes a binding as the API's bindings endpoint shows it:
// the port's host and interface fields plus the port itself.
func bindingFields() []*model.Field {
	host := *model.PortKind.Field("host_id")
	host.Parent, host.Required = true, true
	iface := *model.PortKind.Field("interface_name")
	iface.Required = true
	port := &model.Field{JSON: "port_id", CLI: "port", Ref: model.PortKind.Name, Type: reflect.TypeFor[string](),
		Required: true, Doc: "the port bound to the interface"}
	return []*model.Field{&host, &iface, port}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

var (
	rowsByName = map[string]*Row{}
	topLevel   = map[string]*Row{} // by Word
	rowsByKind = map[string]*Row{} // model kind name → row
)

// index fills the lookup maps and checks the table's consistency, so a bad
// row fails every test rather than one command in the field.
func index() {
	for _, r := range table {
		if r.Name == "" {
			r.Name = r.Kind.Name
		}
		if r.Word == "" {
			r.Word = r.Name
		}
		if r.Print == "" {
			r.Print = r.Word
		}
		r.indexFields()
		mustNotExist(rowsByName, r.Name, "row")
		rowsByName[r.Name] = r
		if r.TopLevel {
			mustNotExist(topLevel, r.Word, "top-level word")
			topLevel[r.Word] = r
		}
		if r.Kind != nil {
			rowsByKind[r.Kind.Name] = r
		}
	}
	for _, r := range table {
		for _, name := range r.Children {
			c := rowsByName[name]
			if c == nil {
				panic("cli: row " + r.Name + " has unknown child " + name)
			}
			if r.child(c.Word) != nil {
				panic("cli: row " + r.Name + " has two children called " + c.Word)
			}
			if c.parentField(r) == nil {
				panic("cli: row " + c.Name + " has no parent field referring to " + r.Name)
			}
			r.children = append(r.children, c)
		}
		r.checkWords()
	}
}

// indexFields fills the field lists of a row from its Fields (the kind's
// by default): the fields the CLI knows, and by word.
func (r *Row) indexFields() {
	if r.Fields == nil {
		r.Fields = r.Kind.Fields
	}
	r.byWord = map[string][]*model.Field{}
	for _, f := range r.Fields {
		if f.CLI == "" || f.NoCLI {
			continue
		}
		r.fields = append(r.fields, f)
		r.byWord[f.CLI] = append(r.byWord[f.CLI], f)
	}
}

// checkWords panics unless every word names one field, or references of
// distinct kinds, and views do not shadow fields or children.
func (r *Row) checkWords() {
	for w, fs := range r.byWord {
		// Several fields may share a word only when they are references
		// of different kinds: the value's kind then picks the field
		// (a port's device is a bridge or a router).
		for i, f := range fs {
			if len(fs) > 1 && (f.Ref == "" || slices.ContainsFunc(fs[:i], func(g *model.Field) bool { return g.Ref == f.Ref })) {
				panic(fmt.Sprintf("cli: row %s: word %q names several fields that are not refs of distinct kinds", r.Name, w))
			}
		}
	}
	for _, v := range r.Views {
		if r.byWord[v.Word] != nil || r.child(v.Word) != nil || r.column(v.Word) != nil || v.Word == "id" || verbOf(v.Word) != 0 {
			panic(fmt.Sprintf("cli: row %s: view %q is also a field, child or verb word", r.Name, v.Word))
		}
	}
}

func mustNotExist(m map[string]*Row, k, what string) {
	if m[k] != nil {
		panic("cli: duplicate " + what + " " + k)
	}
}

// child finds the child row called word.
func (r *Row) child(word string) *Row {
	for _, c := range r.children {
		if c.Word == word {
			return c
		}
	}
	return nil
}

// fieldsFor returns the fields a CLI word names (usually one).
func (r *Row) fieldsFor(word string) []*model.Field { return r.byWord[word] }

// field looks a field up by JSON name.
func (r *Row) field(json string) *model.Field {
	for _, f := range r.Fields {
		if f.JSON == json {
			return f
		}
	}
	return nil
}

// parentField is the field of r that refers to an object of parent.
func (r *Row) parentField(parent *Row) *model.Field {
	for _, f := range r.Fields {
		if f.Parent && parent.Kind != nil && f.Ref == parent.Kind.Name {
			return f
		}
	}
	return nil
}

// isRoot reports whether the row's objects have no owner, so their aliases
// count among all objects of the type.
func (r *Row) isRoot() bool {
	return !slices.ContainsFunc(r.Fields, func(f *model.Field) bool { return f.Parent })
}

// parents lists the rows that can own r's objects.
func (r *Row) parents() []*Row {
	var out []*Row
	for _, p := range table {
		if slices.Contains(p.children, r) {
			out = append(out, p)
		}
	}
	return out
}

// view finds a view by word.
func (r *Row) view(word string) *View {
	for i := range r.Views {
		if r.Views[i].Word == word {
			return &r.Views[i]
		}
	}
	return nil
}

func viewWords(r *Row) []string {
	var out []string
	for _, v := range r.Views {
		out = append(out, v.Word)
	}
	return out
}

// hidden reports whether a field stays off the object's line.
func (r *Row) hidden(json string) bool { return slices.Contains(r.Hide, json) }

// column finds a computed column by word.
func (r *Row) column(word string) *Column {
	for i := range r.Columns {
		if r.Columns[i].Word == word {
			return &r.Columns[i]
		}
	}
	return nil
}

// plural is the API collection of the row's kind.
func (r *Row) plural() string { return r.Kind.Plural }

// rowForRef returns the row of the kind a reference field points at.
func rowForRef(f *model.Field) *Row { return rowsByKind[f.Ref] }
