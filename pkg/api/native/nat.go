package native

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/nagare/nagare/pkg/agentstatus"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/sim"
)

// NATTranslations is the answer of GET /routers/{id}/nat-translations:
// the router's NAT bindings on every live host.
type NATTranslations struct {
	RouterID string `json:"router_id"`
	// Truncated counts bindings hosts held but did not publish (each
	// publishes at most nsdb.MaxNATTranslations, of all its routers).
	Truncated    int                          `json:"truncated"`
	Translations []agentstatus.NATTranslation `json:"translations"`
}

// natTranslations merges what the live hosts' agents published about the
// router's bindings, sorted so that two reads of the same state are equal.
// Records are matched by zone (the router's tag), which every host computes
// the same way, so a record whose agent could not name the router counts.
func (a *API) natTranslations(w http.ResponseWriter, r *http.Request) {
	id := pathID(r, "id")
	if _, err := a.store.Get(r.Context(), model.RouterKind, id); err != nil {
		a.fail(w, r, err)
		return
	}
	s, ok := a.store.(interface {
		ListNATTranslations(context.Context) ([]agentstatus.NATTranslations, error)
	})
	if !ok {
		writeError(w, &httpError{http.StatusNotImplemented, "NotImplemented", "", "this store keeps no NAT translations"})
		return
	}
	alive, err := a.store.AliveHosts(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	all, err := s.ListNATTranslations(r.Context())
	if err != nil {
		a.fail(w, r, err)
		return
	}
	zone := fmt.Sprintf("%016x", sim.ObjectTag(model.RouterKind, id))
	now := time.Now()
	out := NATTranslations{RouterID: id, Translations: []agentstatus.NATTranslation{}}
	for _, h := range all {
		if !alive[h.HostID] {
			continue
		}
		out.Truncated += h.Truncated
		for _, t := range h.Translations {
			if t.Zone != zone {
				continue
			}
			t.RouterID = id
			t.TTL = -1
			if !t.Expires.IsZero() {
				t.TTL = max(0, int64(t.Expires.Sub(now).Round(time.Second)/time.Second))
			}
			out.Translations = append(out.Translations, t)
		}
	}
	slices.SortFunc(out.Translations, func(x, y agentstatus.NATTranslation) int {
		return cmp.Or(cmp.Compare(x.Protocol, y.Protocol), cmp.Compare(x.InsideGlobal, y.InsideGlobal),
			cmp.Compare(x.InsideLocal, y.InsideLocal), cmp.Compare(x.OutsideLocal, y.OutsideLocal),
			cmp.Compare(x.Type, y.Type), cmp.Compare(x.HostID, y.HostID))
	})
	writeJSON(w, http.StatusOK, out)
}
