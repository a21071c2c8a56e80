package nsdb

import (
	"testing"

	"github.com/nagare/nagare/pkg/model"
)

// TestShareDecoded: one object per key and revision once sharing is on;
// a newer revision replaces it, an older one is handed back but not kept,
// and a deletion forgets what it deleted.
func TestShareDecoded(t *testing.T) {
	var d decodedObjects
	obj := func(rev int64) model.Object { return &model.Bridge{Meta: model.Meta{ID: "b", Revision: rev}} }
	off := obj(5)
	if d.share("k", off) != off || d.share("k", obj(5)) == off {
		t.Fatal("sharing while off")
	}
	d.on.Store(true)
	first := obj(5)
	steps := []struct {
		what string
		in   model.Object
		want func(in, got model.Object) bool
	}{
		{"first at 5", first, func(in, got model.Object) bool { return got == in }},
		{"again at 5", obj(5), func(_, got model.Object) bool { return got == first }},
		{"older at 3", obj(3), func(in, got model.Object) bool { return got == in }},
		{"5 still shared", obj(5), func(_, got model.Object) bool { return got == first }},
	}
	for _, s := range steps {
		if got := d.share("k", s.in); !s.want(s.in, got) {
			t.Fatalf("%s: got revision %d (%p)", s.what, got.GetMeta().Revision, got)
		}
	}
	newer := obj(7)
	if d.share("k", newer) != newer || d.share("k", obj(7)) != newer {
		t.Fatal("a newer revision does not replace the shared one")
	}
	d.forget("k", 6) // a deletion older than what is held: kept
	if d.share("k", obj(7)) != newer {
		t.Fatal("forget dropped a newer object")
	}
	d.forget("k", 8)
	if again := obj(7); d.share("k", again) != again {
		t.Fatal("forget kept a deleted object")
	}
}

// TestLiveHosts: changes and resets apply, and a set Alive returned
// stays as it was (callers share it).
func TestLiveHosts(t *testing.T) {
	var h LiveHosts
	if a, _ := h.Alive(); len(a) != 0 {
		t.Fatalf("zero value: %v", a)
	}
	steps := []struct {
		l    Liveness
		want []string
	}{
		{Liveness{Reset: true, Alive: map[string]bool{"a": true, "b": true}}, []string{"a", "b"}},
		{Liveness{Alive: map[string]bool{"c": true, "a": false}}, []string{"b", "c"}},
		{Liveness{Reset: true, Alive: map[string]bool{"d": true}}, []string{"d"}},
	}
	var prev map[string]bool
	var prevWant []string
	lastRev := int64(-1)
	for i, s := range steps {
		if err := h.Apply(s.l); err != nil {
			t.Fatal(err)
		}
		got, rev := h.Alive()
		if rev == lastRev {
			t.Errorf("step %d: revision unchanged", i)
		}
		lastRev = rev
		if len(got) != len(s.want) {
			t.Errorf("step %d: %v, want %v", i, got, s.want)
		}
		for _, id := range s.want {
			if !got[id] {
				t.Errorf("step %d: %v, want %v", i, got, s.want)
			}
		}
		if prev != nil && len(prev) != len(prevWant) {
			t.Errorf("step %d changed the set an earlier Alive returned: %v", i, prev)
		}
		prev, prevWant = got, s.want
	}
}
