package gateway

import (
	"bytes"
	"slices"
	"testing"
)

func TestWire(t *testing.T) {
	req := appendRequest(nil, 77)
	m, err := decode(req, nil)
	if err != nil || m.typ != msgRequest || m.seq != 77 {
		t.Fatalf("request: %+v, %v", m, err)
	}
	ups := []uplinkState{{key: 0xabcdef, up: true}, {key: 5, up: false}}
	rep := appendReport(nil, 9, true, ups)
	m, err = decode(rep, nil)
	if err != nil || m.typ != msgReport || m.seq != 9 || !m.nsdb || !slices.Equal(m.uplinks, ups) {
		t.Fatalf("report: %+v, %v", m, err)
	}
	if m, err := decode(appendReport(nil, 0, false, nil), nil); err != nil || m.nsdb || len(m.uplinks) != 0 {
		t.Fatalf("empty report: %+v, %v", m, err)
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"short", req[:7]},
		{"version", append([]byte{2}, req[1:]...)},
		{"type", append([]byte{1, 9}, req[2:]...)},
		{"reserved", append([]byte{1, 1, 0, 1}, req[4:]...)},
		{"request with a tail", append(bytes.Clone(req), 0)},
		{"report without a count", rep[:8]},
		{"count past the end", rep[:len(rep)-1]},
		{"count short of the end", append(bytes.Clone(rep), 0, 0, 0, 1)},
		{"key zero", appendReport(nil, 1, false, []uplinkState{{key: 0}})},
		{"stray bits", func() []byte { b := bytes.Clone(rep); b[10] |= 0x40; return b }()},
	} {
		if m, err := decode(c.b, nil); err == nil {
			t.Errorf("%s: decoded as %+v", c.name, m)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(appendRequest(nil, 1))
	f.Add(appendReport(nil, 2, true, []uplinkState{{key: 1, up: true}, {key: 0xffffff}}))
	f.Add([]byte{1, 2, 0, 0, 0, 0, 0, 0, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decode(b, make([]uplinkState, 0, 4))
		if err != nil {
			return
		}
		// What decodes encodes back to the same bytes.
		var again []byte
		if m.typ == msgRequest {
			again = appendRequest(nil, m.seq)
		} else {
			again = appendReport(nil, m.seq, m.nsdb, m.uplinks)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("%x decoded to %+v, which encodes to %x", b, m, again)
		}
	})
}
