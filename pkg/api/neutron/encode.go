package neutron

import (
	"encoding/json"
	"math"
	"net/http"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Collections are rendered as maps (so filters, sorting and fields work on
// any attribute); encoding/json encodes maps by reflection and sorts their
// keys, which for a 10,000-port list costs more than reading the ports.
// appendJSON encodes the value types views use directly.

func writeDoc(w http.ResponseWriter, status int, v map[string]any) {
	buf := appendJSON(make([]byte, 0, 4096), v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(buf, '\n'))
}

func appendJSON(b []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, x)
	case bool:
		return strconv.AppendBool(b, x)
	case int:
		return strconv.AppendInt(b, int64(x), 10)
	case int64:
		return strconv.AppendInt(b, x, 10)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return append(b, "null"...)
		}
		return strconv.AppendFloat(b, x, 'g', -1, 64)
	case []string:
		return appendArray(b, x, appendString)
	case map[string]string:
		return appendObject(b, x, appendString)
	case []map[string]string:
		return appendArray(b, x, func(b []byte, m map[string]string) []byte { return appendJSON(b, m) })
	case []map[string]any:
		return appendArray(b, x, func(b []byte, m map[string]any) []byte { return appendJSON(b, m) })
	case map[string]any:
		return appendObject(b, x, appendJSON)
	case []any:
		return appendArray(b, x, appendJSON)
	}
	// Anything else (rare): encoding/json.
	j, err := json.Marshal(v)
	if err != nil {
		return append(b, "null"...)
	}
	return append(b, j...)
}

// appendArray writes xs as a JSON array, each element with elem.
func appendArray[T any](b []byte, xs []T, elem func([]byte, T) []byte) []byte {
	b = append(b, '[')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		b = elem(b, x)
	}
	return append(b, ']')
}

// appendObject writes m as a JSON object with sorted keys (encoding/json's
// order), each value with val.
func appendObject[V any](b []byte, m map[string]V, val func([]byte, V) []byte) []byte {
	return appendObjectKeys(b, m, sortedKeys(m), val)
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// hasKeys reports whether keys are exactly m's keys (keys has no
// duplicates).
func hasKeys[V any](m map[string]V, keys []string) bool {
	if len(keys) != len(m) {
		return false
	}
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}

// appendObjectKeys is appendObject with m's keys given, in order.
func appendObjectKeys[V any](b []byte, m map[string]V, keys []string, val func([]byte, V) []byte) []byte {
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = val(b, m[k])
	}
	return append(b, '}')
}

const hex = "0123456789abcdef"

// appendString quotes s as encoding/json does (HTML-safe escapes included,
// invalid UTF-8 replaced).
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			if r == utf8.RuneError {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
