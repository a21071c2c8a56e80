package neutron

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// Neutron's collection conventions over rendered objects: filters on any
// attribute (a repeated parameter is an OR, different ones AND), tag
// filters, sort keys, marker/limit pagination with links, and fields.

// reserved are the query parameters that are not filters.
var reserved = map[string]bool{"fields": true, "limit": true, "marker": true, "page_reverse": true, "sort_key": true,
	"sort_dir": true, "tags": true, "tags-any": true, "not-tags": true, "not-tags-any": true, "verbose": true}

// listQuery is a parsed list request.
type listQuery struct {
	filters  map[string][]string
	tagsAll  []string
	tagsAny  []string
	notAll   []string
	notAny   []string
	sortKeys []string
	sortAsc  []bool
	limit    int
	marker   string
	reverse  bool
	fields   []string
}

func parseList(r *http.Request, res attrs, c *identity.Context) (*listQuery, error) {
	q := r.URL.Query()
	lq := &listQuery{filters: map[string][]string{}}
	var invalid []string
	for k, vs := range q {
		if reserved[k] {
			continue
		}
		exists, visible := res.attribute(k, c)
		if !exists || !visible {
			invalid = append(invalid, k)
			continue
		}
		var keep []string
		for _, v := range vs {
			if v != "" {
				keep = append(keep, v)
			}
		}
		if len(keep) > 0 {
			lq.filters[k] = keep
		}
	}
	if len(invalid) > 0 {
		sort.Strings(invalid)
		return nil, neutron.HTTPBadRequest("%s is invalid attribute for filtering", pyList(invalid))
	}
	if _, t := lq.filters["tenant_id"]; t {
		if _, p := lq.filters["project_id"]; p {
			return nil, neutron.NewError(neutron.BadRequest, "TenantIdProjectIdFilterConflict", "Both tenant_id and project_id passed as filters.")
		}
	}
	split := func(name string) []string {
		var out []string
		for _, v := range q[name] {
			for _, t := range strings.Split(v, ",") {
				if t != "" {
					out = append(out, t)
				}
			}
		}
		return out
	}
	lq.tagsAll, lq.tagsAny, lq.notAll, lq.notAny = split("tags"), split("tags-any"), split("not-tags"), split("not-tags-any")
	keys, dirs := nonEmpty(q["sort_key"]), nonEmpty(q["sort_dir"])
	if len(dirs) != 0 && len(keys) != len(dirs) {
		return nil, neutron.HTTPBadRequest("The number of sort_keys and sort_dirs must be same")
	}
	var absent []string
	for i, k := range keys {
		if exists, visible := res.attribute(k, c); !exists || !visible {
			absent = append(absent, k)
		}
		asc := true
		if len(dirs) > 0 {
			switch dirs[i] {
			case "asc":
			case "desc":
				asc = false
			default:
				return nil, neutron.HTTPBadRequest("%s is invalid value for sort_dirs, valid value is 'asc' and 'desc'", pyList([]string{dirs[i]}))
			}
		}
		lq.sortKeys, lq.sortAsc = append(lq.sortKeys, k), append(lq.sortAsc, asc)
	}
	if len(absent) > 0 {
		return nil, neutron.HTTPBadRequest("%s is invalid attribute for sort_keys", pyList(absent))
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			return nil, neutron.BadResourceRequest("limit", "Limit must be an integer 0 or greater and not '%s'", l)
		}
		lq.limit = n
	}
	lq.marker = q.Get("marker")
	lq.reverse = strings.EqualFold(q.Get("page_reverse"), "true")
	lq.fields = nonEmpty(q["fields"])
	return lq, nil
}

func nonEmpty(xs []string) []string {
	var out []string
	for _, x := range xs {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

// matches applies the filters and tag filters to a rendered object.
func (lq *listQuery) matches(m map[string]any) bool {
	for k, vs := range lq.filters {
		if !slices.ContainsFunc(vs, func(v string) bool { return valueMatches(k, m[k], v) }) {
			return false
		}
	}
	tags, _ := m["tags"].([]string)
	has := func(t string) bool { return slices.Contains(tags, t) }
	all := func(ts []string) bool {
		for _, t := range ts {
			if !has(t) {
				return false
			}
		}
		return true
	}
	anyOf := func(ts []string) bool { return slices.ContainsFunc(ts, has) }
	switch {
	case len(lq.tagsAll) > 0 && !all(lq.tagsAll):
		return false
	case len(lq.tagsAny) > 0 && !anyOf(lq.tagsAny):
		return false
	case len(lq.notAll) > 0 && all(lq.notAll):
		return false
	case len(lq.notAny) > 0 && anyOf(lq.notAny):
		return false
	}
	return true
}

// valueMatches compares one attribute with one filter value the way
// Neutron's converters would: booleans and numbers by value, lists by
// membership, fixed_ips by "ip_address=…" or "subnet_id=…".
func valueMatches(name string, have any, want string) bool {
	switch h := have.(type) {
	case nil:
		return false
	case string:
		return h == want
	case bool:
		b, err := strconv.ParseBool(strings.ToLower(want))
		return err == nil && b == h
	case int:
		n, err := strconv.Atoi(want)
		return err == nil && n == h
	case int64:
		n, err := strconv.ParseInt(want, 10, 64)
		return err == nil && n == h
	case []string:
		return slices.Contains(h, want)
	case []map[string]string:
		k, v, ok := strings.Cut(want, "=")
		if !ok {
			return false
		}
		if k == "ip_address_substr" {
			return slices.ContainsFunc(h, func(m map[string]string) bool { return strings.Contains(m["ip_address"], v) })
		}
		return slices.ContainsFunc(h, func(m map[string]string) bool { return m[k] == v })
	}
	b, _ := json.Marshal(have)
	return string(b) == want
}

// compare orders two attribute values; nil sorts first, as in Neutron.
func compare(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	switch x := a.(type) {
	case string:
		if y, ok := b.(string); ok {
			return strings.Compare(x, y)
		}
	case bool:
		if y, ok := b.(bool); ok {
			switch {
			case x == y:
				return 0
			case !x:
				return -1
			}
			return 1
		}
	case int:
		if y, ok := b.(int); ok {
			return x - y
		}
	case int64:
		if y, ok := b.(int64); ok {
			switch {
			case x < y:
				return -1
			case x > y:
				return 1
			}
			return 0
		}
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return strings.Compare(string(ja), string(jb))
}

// page sorts, paginates and builds the links of a filtered collection.
func (lq *listQuery) page(r *http.Request, items []map[string]any) ([]map[string]any, []map[string]string, error) {
	keys, asc := lq.sortKeys, lq.sortAsc
	if lq.limit > 0 && !slices.Contains(keys, "id") {
		// Pagination needs a total order: Neutron adds the id.
		keys, asc = append(slices.Clone(keys), "id"), append(slices.Clone(asc), true)
	}
	if len(keys) > 0 {
		sort.SliceStable(items, func(i, j int) bool {
			for k, key := range keys {
				c := compare(items[i][key], items[j][key])
				if c != 0 {
					return (c < 0) == asc[k]
				}
			}
			return false
		})
	}
	if lq.limit == 0 {
		return items, nil, nil
	}
	start, end := 0, len(items)
	if lq.marker != "" {
		i := slices.IndexFunc(items, func(m map[string]any) bool { return m["id"] == lq.marker })
		if i < 0 {
			return nil, nil, errMarker
		}
		if lq.reverse {
			end = i
		} else {
			start = i + 1
		}
	}
	if lq.reverse {
		start = max(end-lq.limit, 0)
	} else {
		end = min(start+lq.limit, len(items))
	}
	page := items[start:end]
	var links []map[string]string
	if !(len(page) < lq.limit && !lq.reverse) {
		links = append(links, map[string]string{"rel": "next", "href": pageLink(r, page, false)})
	}
	if !(len(page) < lq.limit && lq.reverse) {
		links = append(links, map[string]string{"rel": "previous", "href": pageLink(r, page, true)})
	}
	return page, links, nil
}

// errMarker: the marker is not an object the caller can see.
var errMarker = fmt.Errorf("marker not found")

func pageLink(r *http.Request, page []map[string]any, previous bool) string {
	params := url.Values{}
	for k, v := range r.URL.Query() {
		params[k] = v
	}
	params.Del("marker")
	if len(page) > 0 {
		i := len(page) - 1
		if previous {
			i = 0
		}
		params.Set("marker", fmt.Sprint(page[i]["id"]))
	}
	if previous {
		params.Set("page_reverse", "True")
	} else {
		params.Del("page_reverse")
	}
	return baseURL(r) + r.URL.Path + "?" + params.Encode()
}

// project keeps only the requested fields.
func project(m map[string]any, fields []string) map[string]any {
	if len(fields) == 0 {
		return m
	}
	out := make(map[string]any, len(fields))
	for _, f := range fields {
		if v, ok := m[f]; ok {
			out[f] = v
		}
	}
	return out
}
