package health

import (
	"fmt"
	"strconv"
	"strings"
)

// Codes is a set of expected HTTP status codes.
type Codes []codeRange

type codeRange struct{ lo, hi int }

// ParseCodes parses Octavia's expected_codes: a code ("200"), a list
// ("200,202") or a range ("200-204"), and combinations ("200-204,301").
// Empty means "200".
func ParseCodes(s string) (Codes, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		s = "200"
	}
	var out Codes
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parseCode(lo)
		if err != nil {
			return nil, fmt.Errorf("expected_codes %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = parseCode(hi); err != nil {
				return nil, fmt.Errorf("expected_codes %q: %w", s, err)
			}
			if b < a {
				return nil, fmt.Errorf("expected_codes %q: range %s ends before it starts", s, part)
			}
		}
		out = append(out, codeRange{a, b})
	}
	return out, nil
}

func parseCode(s string) (int, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return 0, fmt.Errorf("%q is not an HTTP status code (100-599)", s)
	}
	return n, nil
}

// Match reports whether code is expected.
func (c Codes) Match(code int) bool {
	for _, r := range c {
		if code >= r.lo && code <= r.hi {
			return true
		}
	}
	return false
}
