package nsdb

import (
	"strings"
)

// Host-scoped state. etcd's RBAC grants by key prefix, so every piece of
// runtime state an agent writes lives under a prefix that names its host
// (state/<what>/<hostID>/…) and a host's role may write that prefix and
// nothing else (HostPermissions). Where several hosts may say something
// about the same thing — a MAC two hosts learned, a pool member whose
// checker moved — each keeps its own copy, and readers merge them with
// HostEntries: the newest write wins, and when it goes (its host's lease
// ended, or the host withdrew it) the next newest takes its place.

// hostScoped splits a key under prefix into the host id and the rest
// ("" and false when the key is not <prefix><host>/<rest>).
func hostScoped(key, prefix string) (host, rest string, ok bool) {
	r, found := strings.CutPrefix(key, prefix)
	if !found {
		return "", "", false
	}
	host, rest, found = strings.Cut(r, "/")
	return host, rest, found && host != "" && rest != ""
}

// HostEntries merges the copies several hosts wrote of the same keys:
// each key's value is the one with the highest revision. It is pure and
// not safe for concurrent use; watchers keep one per watch.
type HostEntries[K comparable, V comparable] struct {
	m map[K]map[string]versioned[V]
}

type versioned[V any] struct {
	v   V
	rev int64
}

// Reset forgets everything.
func (h *HostEntries[K, V]) Reset() { h.m = nil }

// Winner is k's value (the newest host's), false when no host has one.
func (h *HostEntries[K, V]) Winner(k K) (V, bool) {
	var best versioned[V]
	found := false
	for _, e := range h.m[k] {
		if !found || e.rev > best.rev {
			best, found = e, true
		}
	}
	return best.v, found
}

// Put records host's value of k written at rev, and reports k's winner
// afterwards and whether it differs from the winner before.
func (h *HostEntries[K, V]) Put(k K, host string, v V, rev int64) (winner V, changed bool) {
	before, had := h.Winner(k)
	if h.m == nil {
		h.m = map[K]map[string]versioned[V]{}
	}
	hs := h.m[k]
	if hs == nil {
		hs = map[string]versioned[V]{}
		h.m[k] = hs
	}
	hs[host] = versioned[V]{v, rev}
	winner, _ = h.Winner(k)
	return winner, !had || before != winner
}

// Delete forgets host's value of k and reports k's winner afterwards
// (present false when no host has k any more), and whether it differs
// from the winner before; before is the winner before.
func (h *HostEntries[K, V]) Delete(k K, host string) (winner V, present, changed bool, before V) {
	before, had := h.Winner(k)
	if hs := h.m[k]; hs != nil {
		delete(hs, host)
		if len(hs) == 0 {
			delete(h.m, k)
		}
	}
	winner, present = h.Winner(k)
	return winner, present, had && (!present || before != winner), before
}

// Each calls fn with every key's winner.
func (h *HostEntries[K, V]) Each(fn func(K, V)) {
	for k := range h.m {
		v, _ := h.Winner(k)
		fn(k, v)
	}
}
