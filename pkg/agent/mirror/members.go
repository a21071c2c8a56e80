package mirror

import (
	"maps"
	"slices"

	"github.com/nagare/nagare/pkg/model"
)

// hostMembers indexes tunnel-zone memberships by host: host id → the ids
// of its memberships.
type hostMembers map[string]map[string]struct{}

// add indexes o if it is a membership.
func (h hostMembers) add(o model.Object) {
	zm, ok := o.(*model.TunnelZoneMember)
	if !ok || zm == nil {
		return
	}
	ids := h[zm.HostID]
	if ids == nil {
		ids = map[string]struct{}{}
		h[zm.HostID] = ids
	}
	ids[zm.ID] = struct{}{}
}

// del removes o from the index if it is a membership.
func (h hostMembers) del(o model.Object) {
	zm, ok := o.(*model.TunnelZoneMember)
	if !ok || zm == nil {
		return
	}
	if ids := h[zm.HostID]; ids != nil {
		delete(ids, zm.ID)
		if len(ids) == 0 {
			delete(h, zm.HostID)
		}
	}
}

// of returns host's memberships in objs, in id order.
func (h hostMembers) of(objs objects, host string) []*model.TunnelZoneMember {
	ids := h[host]
	if len(ids) == 0 {
		return nil
	}
	out := make([]*model.TunnelZoneMember, 0, len(ids))
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		if zm, ok := objs.get(model.TunnelZoneMemberKind, id).(*model.TunnelZoneMember); ok {
			out = append(out, zm)
		}
	}
	return out
}
