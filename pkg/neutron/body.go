package neutron

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

// Body is one resource of a request body ({"network": {...}} unwrapped),
// attribute by attribute, undecoded until a resource asks for a value.
type Body map[string]json.RawMessage

// attr describes one attribute of a resource the way Neutron's attribute
// maps do: whether POST and PUT may set it, whether POST requires it, and
// the policy around it.
type attr struct {
	post, put bool
	required  bool // POST must carry it
	// adminSet: only admins may set it (provider:*, binding:host_id,
	// router:external, shared, …); others get 403.
	adminSet bool
	// adminView: only admins see it (provider:*, binding:* but vnic_type).
	adminView bool
}

// spec is a resource's attribute map.
type spec map[string]attr

// std are the attributes of every resource with standard attributes.
var std = spec{
	"id":              {},
	"tenant_id":       {post: true},
	"project_id":      {post: true},
	"description":     {post: true, put: true},
	"tags":            {post: true},
	"created_at":      {},
	"updated_at":      {},
	"revision_number": {},
}

func (s spec) with(more spec) spec {
	out := spec{}
	for k, v := range s {
		out[k] = v
	}
	for k, v := range more {
		out[k] = v
	}
	return out
}

// check applies the attribute map to a request: unknown attributes and
// attributes the method may not set are refused as Neutron's API layer
// refuses them (400), admin-only ones with the policy engine's 403.
func (s spec) check(b Body, post bool, c *identity.Context, resource string) error {
	var unknown []string
	for k := range b {
		if _, ok := s[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return httpBadRequest("Unrecognized attribute(s) '%s'", strings.Join(unknown, ", "))
	}
	names := make([]string, 0, len(b))
	for k := range b {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		a := s[k]
		switch {
		case post && !a.post:
			return httpBadRequest("Attribute '%s' not allowed in POST", k)
		case !post && !a.put:
			return httpBadRequest("Cannot update read-only attribute %s", k)
		}
		if a.adminSet && !c.IsAdmin() {
			verb := "update"
			if post {
				verb = "create"
			}
			return policyNotAuthorized(verb + "_" + resource + ":" + k)
		}
	}
	if post {
		for _, k := range sortedKeys(s) {
			if s[k].required {
				if _, ok := b[k]; !ok {
					return httpBadRequest("Failed to parse request. Required attribute '%s' not specified", k)
				}
			}
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// invalid is the error of a value that fails its validator.
func invalid(name, format string, args ...any) *Error {
	return httpBadRequest("Invalid input for %s. Reason: %s.", name, fmt.Sprintf(format, args...))
}

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

func (b Body) uuidList(name string) ([]string, bool, error) {
	v, ok := b[name]
	if !ok {
		return nil, false, nil
	}
	var xs []string
	if err := json.Unmarshal(v, &xs); err != nil {
		return nil, true, invalid(name, "'%s' is not a list", rawText(v))
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
	v, ok := b[name]
	if !ok || b.isNull(name) {
		return netip.Addr{}, ok, nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return netip.Addr{}, true, invalid(name, "'%s' is not a valid IP address", rawText(v))
	}
	a, err := parseIP(s)
	if err != nil {
		return netip.Addr{}, true, invalid(name, "'%s' is not a valid IP address", s)
	}
	return a, true, nil
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

func (b Body) cidr(name string) (netip.Prefix, bool, error) {
	v, ok := b[name]
	if !ok || b.isNull(name) {
		return netip.Prefix{}, ok, nil
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return netip.Prefix{}, true, invalid(name, "'%s' is not a valid IP subnet", rawText(v))
	}
	p, err := parseCIDR(s)
	if err != nil {
		return netip.Prefix{}, true, invalid(name, "%s", err.Error())
	}
	return p, true, nil
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
	v, ok := b[name]
	if !ok {
		return nil, false, nil
	}
	var xs []string
	if err := json.Unmarshal(v, &xs); err != nil {
		return nil, true, invalid(name, "'%s' is not a list", rawText(v))
	}
	out, err := normalizeTags(xs)
	return out, true, err
}

func normalizeTags(xs []string) ([]string, error) {
	seen := map[string]bool{}
	out := []string{}
	for _, t := range xs {
		if err := validTag(t); err != nil {
			return nil, err
		}
		if !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	if len(out) > maxTags {
		return nil, badRequest("tags", "The number of tags exceeds the limit %d", maxTags)
	}
	sort.Strings(out)
	return out, nil
}

const maxTags = 50

func validTag(t string) error {
	if t == "" || len([]rune(t)) > 255 {
		return invalid("tags", "'%s' is not a valid tag: tags are 1 to 255 characters", t)
	}
	if strings.Contains(t, ",") {
		return invalid("tags", "'%s' contains ',': tags cannot contain commas (the filters separate tags with them)", t)
	}
	return nil
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

func rawText(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
		return "None"
	}
	return string(v)
}

// projectOf applies Neutron's project_id rules to a POST: tenant_id and
// project_id must agree; only admins name another project than their own.
func projectOf(b Body, c *identity.Context) (string, error) {
	t, hasT, err := b.str("tenant_id", 255)
	if err != nil {
		return "", err
	}
	p, hasP, err := b.str("project_id", 255)
	if err != nil {
		return "", err
	}
	switch {
	case hasT && hasP && t != p:
		return "", httpBadRequest("'project_id' and 'tenant_id' do not match")
	case hasT:
		p = t
	case !hasP:
		p = c.ProjectID
	}
	if p != c.ProjectID && !c.IsAdmin() {
		return "", httpBadRequest("Specifying 'project_id' or 'tenant_id' other than the authenticated project in request is not allowed for current user.")
	}
	if p == "" {
		return "", httpBadRequest("Running without keystone AuthN requires that tenant_id is specified")
	}
	return p, nil
}
