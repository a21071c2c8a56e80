package neutron

import (
	"encoding/json"
	"reflect"
	"testing"
)

// TestAppendJSON: the fast encoder writes what encoding/json would.
func TestAppendJSON(t *testing.T) {
	v := map[string]any{
		"s": "a\"b\\c\n<tag>&\u2028é\x01", "n": nil, "t": true, "i": 42, "i64": int64(-7), "f": 1.5,
		"ss": []string{"x", "y"}, "ms": []map[string]string{{"ip_address": "10.0.0.1", "subnet_id": "s"}},
		"m": map[string]any{"k": []any{1, "two", nil}}, "mss": map[string]string{"b": "2", "a": "1"},
		"list": []map[string]any{{"z": false}}, "other": struct{ A int }{3},
	}
	want, _ := json.Marshal(v)
	got := appendJSON(nil, v)
	if string(got) != string(want) {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var a, b any
	_ = json.Unmarshal(got, &a)
	_ = json.Unmarshal(want, &b)
	if !reflect.DeepEqual(a, b) {
		t.Error("decoded values differ")
	}
	bad := string([]byte{'a', 0xff, 'b'})
	g, _ := json.Marshal(bad)
	if string(appendString(nil, bad)) != string(g) {
		t.Errorf("invalid UTF-8: got %s want %s", appendString(nil, bad), g)
	}
}
