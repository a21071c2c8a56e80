package agent

import (
	"github.com/nagare/nagare/pkg/nsdb"
	"github.com/nagare/nagare/pkg/sim"
)

// InvalidationTags returns the tags whose flows a topology event makes
// stale. Every flow carries the tags of the objects its simulation read, so
// the changed object's own tag covers most of it; sim's ChangeTags adds the
// decisions that depended on an object's absence (a new route covering
// destinations that used a shorter prefix or had no route, a port joining a
// bridge's flood set). The old version is read against the old topology and
// the new version against the new one, so a moved or deleted object
// invalidates both where it was and where it is.
func InvalidationTags(old, cur *sim.Topology, ev nsdb.Event) []uint64 {
	var tags []uint64
	if ev.Prev != nil && old != nil {
		tags = append(tags, old.ChangeTags(ev.Prev)...)
	}
	if ev.Object != nil {
		tags = append(tags, cur.ChangeTags(ev.Object)...)
	}
	if len(tags) == 0 {
		tags = append(tags, sim.ObjectTag(ev.Kind, ev.ID))
	}
	return tags
}
