package cli

import (
	"encoding"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/packet"
)

var (
	addrType   = reflect.TypeFor[netip.Addr]()
	prefixType = reflect.TypeFor[netip.Prefix]()
)

// parseValue turns the text of a non-reference value into the JSON the API
// takes, using only the field's Go type, enum and bounds from the schema.
// Lists are comma-separated. A bare address given for a prefix means the
// host prefix (/32 or /128), as operators write "dst 10.81.14.201".
func parseValue(f *model.Field, text string) (json.RawMessage, error) {
	t := f.Type
	var v reflect.Value
	if t.Kind() == reflect.Slice {
		parts := strings.Split(text, ",")
		v = reflect.MakeSlice(t, 0, len(parts))
		for _, p := range parts {
			e, err := parseScalar(f, t.Elem(), strings.TrimSpace(p))
			if err != nil {
				return nil, err
			}
			v = reflect.Append(v, e)
		}
	} else {
		var err error
		if v, err = parseScalar(f, t, text); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return nil, fmt.Errorf("%s: %v", f.CLI, err)
	}
	return b, nil
}

func parseScalar(f *model.Field, t reflect.Type, s string) (reflect.Value, error) {
	bad := func() (reflect.Value, error) {
		return reflect.Value{}, fmt.Errorf("%s: %q is not %s", f.CLI, s, typeWord(f, t))
	}
	if s == "" {
		return bad()
	}
	if t == prefixType && !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return bad()
		}
		s = netip.PrefixFrom(a, a.BitLen()).String()
	}
	p := reflect.New(t)
	if u, ok := p.Interface().(encoding.TextUnmarshaler); ok {
		if err := u.UnmarshalText([]byte(s)); err != nil {
			if t == addrType || t == prefixType {
				return bad() // netip's messages are about its parser, not the operator's input
			}
			return reflect.Value{}, fmt.Errorf("%s: %v", f.CLI, err)
		}
		return p.Elem(), nil
	}
	v := p.Elem()
	switch t.Kind() {
	case reflect.String:
		if len(f.Enum) > 0 && !slices.Contains(f.Enum, s) {
			return reflect.Value{}, fmt.Errorf("%s: %q is not one of %s", f.CLI, s, strings.Join(f.Enum, ", "))
		}
		v.SetString(s)
	case reflect.Bool:
		switch s {
		case "true", "yes":
			v.SetBool(true)
		case "false", "no":
		default:
			return bad()
		}
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, err := strconv.ParseUint(s, 10, t.Bits())
		if err != nil {
			return bad()
		}
		if err := checkBounds(f, int64(n)); err != nil {
			return reflect.Value{}, err
		}
		v.SetUint(n)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, t.Bits())
		if err != nil {
			return bad()
		}
		if err := checkBounds(f, n); err != nil {
			return reflect.Value{}, err
		}
		v.SetInt(n)
	default:
		return reflect.Value{}, fmt.Errorf("%s: values of type %s cannot be given on the command line", f.CLI, t)
	}
	return v, nil
}

func checkBounds(f *model.Field, n int64) error {
	if f.Min != nil && n < *f.Min {
		return fmt.Errorf("%s: %d is below the minimum %d", f.CLI, n, *f.Min)
	}
	if f.Max != nil && n > *f.Max {
		return fmt.Errorf("%s: %d is above the maximum %d", f.CLI, n, *f.Max)
	}
	return nil
}

// typeWord says what a value should look like, for errors and describe.
func typeWord(f *model.Field, t reflect.Type) string {
	if f.Ref != "" {
		return "a " + f.Ref + " (alias, UUID or typed path)"
	}
	switch t {
	case addrType:
		return "an IP address"
	case prefixType:
		return "a prefix like 10.0.0.0/24 (a bare address means /32)"
	case reflect.TypeFor[packet.MAC]():
		return "a MAC address like 02:00:00:00:00:05"
	case reflect.TypeFor[model.PortRange]():
		return "a port or range like 80 or 1000-2000"
	case reflect.TypeFor[model.NATTarget]():
		return "a NAT target IP[-IP][:PORT[-PORT]]"
	case reflect.TypeFor[model.Opt121Route]():
		return "a route DEST=GW like 10.1.0.0/16=10.0.0.254"
	}
	switch t.Kind() {
	case reflect.Slice:
		return "a comma-separated list, each " + typeWord(f, t.Elem())
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		if len(f.Enum) > 0 {
			return strings.Join(f.Enum, "|")
		}
		return "a string"
	case reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		lo, hi := int64(0), int64(uint64(1)<<t.Bits()-1)
		if t.Bits() == 64 {
			hi = -1
		}
		if f.Min != nil {
			lo = *f.Min
		}
		if f.Max != nil {
			hi = *f.Max
		}
		if hi < 0 {
			return "a non-negative integer"
		}
		return fmt.Sprintf("an integer %d..%d", lo, hi)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "an integer"
	}
	return "a " + t.String()
}

// rawText renders a field's value from API JSON the way object lines show
// it. ok is false when the field has no value: absent, null, empty string or
// empty list. Zeros and false are values when the API sends them (a host's
// "alive false"); fields the API omits when zero stay off the line.
func rawText(f *model.Field, raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || string(raw) == "null" || string(raw) == `""` || string(raw) == "[]" {
		return "", false
	}
	p := reflect.New(f.Type)
	if err := json.Unmarshal(raw, p.Interface()); err != nil {
		// A server newer than the CLI may send forms it cannot decode;
		// show them rather than fail the whole listing.
		return strings.Trim(string(raw), `"`), true
	}
	s := valueText(p.Elem())
	return s, s != ""
}

func valueText(v reflect.Value) string { return model.ValueText(v) }

// sameValue compares an API value with a value the operator typed, both as
// the field's Go type, so "10.0.0.0/24" matches however the server spells it.
func sameValue(f *model.Field, raw, typed json.RawMessage) bool {
	a, b := reflect.New(f.Type), reflect.New(f.Type)
	if len(raw) == 0 || json.Unmarshal(raw, a.Interface()) != nil || json.Unmarshal(typed, b.Interface()) != nil {
		return false
	}
	return reflect.DeepEqual(a.Elem().Interface(), b.Elem().Interface())
}
