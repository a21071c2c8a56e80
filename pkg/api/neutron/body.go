package neutron

// Request bodies: Neutron's converters. Once a body passed its resource's
// attribute map (attrs.go), the resource's decoder converts the attributes
// it names into the domain's typed request (package neutron) with these,
// refusing malformed values with the messages Neutron's validators use.
// What the values mean is the domain's business.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
	"github.com/nagare/nagare/pkg/packet"
)

// Body is one resource of a request body ({"network": {...}} unwrapped),
// attribute by attribute, undecoded until a resource asks for a value.
type Body map[string]json.RawMessage

// invalid is the error of a value that fails its validator.
var invalid = neutron.Invalid

func (b Body) has(name string) bool { _, ok := b[name]; return ok }

func (b Body) isNull(name string) bool {
	v, ok := b[name]
	return ok && bytes.Equal(bytes.TrimSpace(v), []byte("null"))
}

// str reads a string attribute of at most maxLen characters.
func (b Body) str(name string, maxLen int) (string, bool, error) {
	v, ok := b[name]
	if !ok {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		if b.isNull(name) {
			return "", true, invalid(name, "'None' is not a valid string")
		}
		return "", true, invalid(name, "'%s' is not a valid string", rawText(v))
	}
	if maxLen > 0 && len([]rune(s)) > maxLen {
		return "", true, invalid(name, "'%s' exceeds maximum length of %d", s, maxLen)
	}
	return s, true, nil
}

// boolean reads a boolean; Neutron's converter also takes the strings
// "true"/"false" (any case) and 0/1.
func (b Body) boolean(name string) (bool, bool, error) {
	v, ok := b[name]
	if !ok {
		return false, false, nil
	}
	var x any
	_ = json.Unmarshal(v, &x)
	switch t := x.(type) {
	case bool:
		return t, true, nil
	case string:
		switch strings.ToLower(t) {
		case "true", "1":
			return true, true, nil
		case "false", "0":
			return false, true, nil
		}
	case float64:
		if t == 0 || t == 1 {
			return t == 1, true, nil
		}
	}
	return false, true, invalid(name, "'%s' is not a valid boolean value", rawText(v))
}

// integer reads an integer (a JSON number or a numeric string, as
// Neutron's convert_to_int takes), or reports null.
func (b Body) integer(name string) (n int, null, ok bool, err error) {
	v, ok := b[name]
	if !ok {
		return 0, false, false, nil
	}
	if b.isNull(name) {
		return 0, true, true, nil
	}
	var x any
	_ = json.Unmarshal(v, &x)
	switch t := x.(type) {
	case float64:
		if t == float64(int(t)) {
			return int(t), false, true, nil
		}
	case string:
		if i, err := strconv.Atoi(strings.TrimSpace(t)); err == nil {
			return i, false, true, nil
		}
	}
	return 0, false, true, invalid(name, "'%s' is not an integer", rawText(v))
}

// uuid reads a UUID attribute (Neutron accepts upper case; ids are stored
// lower case).
func (b Body) uuid(name string) (string, bool, error) {
	s, ok, err := b.str(name, 0)
	if err != nil || !ok {
		return "", ok, err
	}
	l := strings.ToLower(s)
	if !model.IsUUID(l) {
		return "", true, invalid(name, "'%s' is not a valid UUID", s)
	}
	return l, true, nil
}

// stringList reads a list of strings.
func (b Body) stringList(name string) ([]string, bool, error) {
	v, ok := b[name]
	if !ok {
		return nil, false, nil
	}
	var xs []string
	if err := json.Unmarshal(v, &xs); err != nil {
		return nil, true, invalid(name, "'%s' is not a list", rawText(v))
	}
	return xs, true, nil
}

// uuidList reads a list of UUIDs without duplicates, in lower case.
func (b Body) uuidList(name string) ([]string, bool, error) {
	xs, ok, err := b.stringList(name)
	if err != nil || !ok {
		return nil, ok, err
	}
	seen := map[string]bool{}
	out := []string{}
	for _, x := range xs {
		l := strings.ToLower(x)
		if !model.IsUUID(l) {
			return nil, true, invalid(name, "'%s' is not a valid UUID", x)
		}
		if !seen[l] {
			seen[l] = true
			out = append(out, l)
		}
	}
	return out, true, nil
}

// ip reads an address; null reads as the zero Addr.
func (b Body) ip(name string) (netip.Addr, bool, error) {
	return parsed(b, name, "IP address", parseIP)
}

// parsed reads a string attribute through parse; null reads as the zero
// value.
func parsed[T any](b Body, name, what string, parse func(string) (T, error)) (T, bool, error) {
	var zero T
	v, ok := b[name]
	if !ok || b.isNull(name) {
		return zero, ok, nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return zero, true, invalid(name, "'%s' is not a valid %s", rawText(v), what)
	}
	x, err := parse(s)
	if err != nil {
		return zero, true, invalid(name, "%s", err.Error())
	}
	return x, true, nil
}

func parseIP(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("'%s' is not a valid IP address", s)
	}
	return a.Unmap(), nil
}

// parseCIDR reads a subnet; like Neutron's validate_subnet it refuses host
// bits set ("'10.0.0.1/24' isn't a recognized IP subnet cidr, '10.0.0.0/24'
// is recommended").
func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		if a, err2 := netip.ParseAddr(strings.TrimSpace(s)); err2 == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		} else {
			return netip.Prefix{}, fmt.Errorf("'%s' is not a valid IP subnet", s)
		}
	}
	if p.Addr().Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("'%s' is not a valid IP subnet", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("'%s' isn't a recognized IP subnet cidr, '%s' is recommended", s, p.Masked())
	}
	return p, nil
}

// parsePrefixLoose reads an address or a prefix that may have host bits
// set (netaddr.IPNetwork's forms); an address is a host prefix.
func parsePrefixLoose(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(t); err == nil && p.Addr().Zone() == "" {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()), nil
	}
	a, err := parseIP(t)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (b Body) cidr(name string) (netip.Prefix, bool, error) {
	return parsed(b, name, "IP subnet", parseCIDR)
}

func (b Body) mac(name string) (packet.MAC, bool, error) {
	s, ok, err := b.str(name, 0)
	if err != nil || !ok {
		return packet.MAC{}, ok, err
	}
	m, err := parseMAC(s)
	if err != nil {
		return packet.MAC{}, true, invalid(name, "'%s' is not a valid MAC address", s)
	}
	return m, true, nil
}

// parseMAC takes the forms netaddr takes for Neutron: colons, dashes, no
// separators; the zero and broadcast addresses are refused.
func parseMAC(s string) (packet.MAC, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if len(t) == 12 && !strings.ContainsAny(t, ":-") {
		t = t[0:2] + ":" + t[2:4] + ":" + t[4:6] + ":" + t[6:8] + ":" + t[8:10] + ":" + t[10:12]
	}
	m, err := packet.ParseMAC(t)
	if err != nil || m.IsZero() || m == (packet.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) {
		return packet.MAC{}, fmt.Errorf("'%s' is not a valid MAC address", s)
	}
	return m, nil
}

// tags reads a list of tags (standard-attr-tag's rules: strings of at most
// 255 characters, no commas, at most 50).
func (b Body) tags(name string) ([]string, bool, error) {
	xs, ok, err := b.stringList(name)
	if err != nil || !ok {
		return nil, ok, err
	}
	out, err := neutron.NormalizeTags(xs)
	return out, true, err
}

// raw decodes an attribute into v, reporting a malformed value.
func (b Body) raw(name string, v any, what string) (bool, error) {
	r, ok := b[name]
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(r, v); err != nil {
		return true, invalid(name, "%s: '%s'", what, rawText(r))
	}
	return true, nil
}

// objects reads a list of objects whose keys are among keys (fixed_ips,
// allowed_address_pairs); unknown words the error naming another key.
func (b Body) objects(name, what, unknown string, keys ...string) ([]Body, bool, error) {
	var raw []Body
	ok, err := b.raw(name, &raw, what)
	if err != nil || !ok {
		return nil, ok, err
	}
	for _, o := range raw {
		for _, k := range slices.Sorted(maps.Keys(o)) {
			if !slices.Contains(keys, k) {
				return nil, true, invalid(name, unknown, k)
			}
		}
	}
	return raw, true, nil
}

func rawText(v json.RawMessage) string {
	if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return "None"
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

// decodeStd reads the standard attributes a resource's attribute map
// admits: the project of a create (tenant_id and project_id must agree),
// name, description and tags.
func decodeStd(b Body) (neutron.StdRequest, error) {
	var r neutron.StdRequest
	t, hasT, err := b.str("tenant_id", 255)
	if err != nil {
		return r, err
	}
	p, hasP, err := b.str("project_id", 255)
	if err != nil {
		return r, err
	}
	switch {
	case hasT && hasP && t != p:
		return r, neutron.HTTPBadRequest("'project_id' and 'tenant_id' do not match")
	case hasT:
		r.ProjectID = &t
	case hasP:
		r.ProjectID = &p
	}
	if r.Name, err = b.optStr("name", 255); err != nil {
		return r, err
	}
	if r.Description, err = b.optStr("description", 255); err != nil {
		return r, err
	}
	if v, ok, err := b.tags("tags"); err != nil {
		return r, err
	} else if ok {
		r.Tags = &v
	}
	return r, nil
}

// optStr reads a string attribute into a pointer (nil when not given).
func (b Body) optStr(name string, maxLen int) (*string, error) {
	v, ok, err := b.str(name, maxLen)
	if err != nil || !ok {
		return nil, err
	}
	return &v, nil
}

// optRef reads an optional reference: nil when not given, "" when null.
func optRef(b Body, name string) (*string, error) {
	if !b.has(name) {
		return nil, nil
	}
	id := ""
	if !b.isNull(name) {
		var err error
		if id, _, err = b.uuid(name); err != nil {
			return nil, err
		}
	}
	return &id, nil
}

// optBool reads a boolean attribute into a pointer (nil when not given).
func (b Body) optBool(name string) (*bool, error) {
	v, ok, err := b.boolean(name)
	if err != nil || !ok {
		return nil, err
	}
	return &v, nil
}

// noneOrEmpty refuses an attribute the domain has no field for unless it
// is null or an empty list (availability_zone_hints, service_types): the
// request asks for nothing Nagare would ignore.
func (b Body) noneOrEmpty(name, what string) error {
	if v, ok := b[name]; ok && string(v) != "[]" && string(v) != "null" {
		return neutron.InvalidInput("%s", what)
	}
	return nil
}

func mustJSON(v any) string {
	j, _ := json.Marshal(v)
	return string(j)
}

func pyList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = "'" + x + "'"
	}
	return "[" + strings.Join(q, ", ") + "]"
}
