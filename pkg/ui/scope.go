package ui

import (
	"github.com/nagare/nagare/pkg/model"
)

// The kinds the picture is drawn from; everything else (chains, rules,
// routes) is read on demand for an object's details.
var streamed = map[*model.Kind]bool{
	model.HostKind: true, model.BridgeKind: true, model.RouterKind: true,
	model.PortKind: true, model.DHCPSubnetKind: true, model.DHCPHostKind: true,
}

// objKey names an object the way a Neutron translation records what it
// owns ("bridge/<id>"), so a member's scope and the mirror share keys.
func objKey(k *model.Kind, id string) string { return k.Name + "/" + id }

func keyOf(o model.Object) string { return objKey(model.KindOf(o), o.GetMeta().ID) }

// viewer is whom an answer is for: an administrator (everything) or a
// project member with the native objects their Neutron objects translate
// to (see the package doc).
type viewer struct {
	admin   bool
	project string
	ids     map[string]bool // member: the scope, by objKey
}

// visible reports whether v may see o, given the mirror objs for the
// closure over router ports. Pure: the same mirror and scope always give
// the same answer, which is what per-subscriber diffing relies on.
func (v *viewer) visible(objs map[string]model.Object, o model.Object) bool {
	if v.admin {
		return true
	}
	switch x := o.(type) {
	case *model.Host:
		return false
	case *model.Port:
		if v.ids[keyOf(x)] || (x.RouterID != "" && v.ids[objKey(model.RouterKind, x.RouterID)]) {
			return true
		}
		// The bridge side of a link to one of the member's routers: the
		// router's gateway port sits on an external network that is not
		// the member's, and belongs to no project in Neutron.
		if x.PeerID != "" {
			if p, ok := objs[objKey(model.PortKind, x.PeerID)].(*model.Port); ok && p.RouterID != "" {
				return v.ids[objKey(model.RouterKind, p.RouterID)]
			}
		}
		return false
	}
	return v.ids[keyOf(o)]
}

// redact returns o as v may see it: members get ports without their
// binding (Neutron shows binding:host_id to administrators only). o itself
// is never modified: it is the mirror's.
func (v *viewer) redact(o model.Object) model.Object {
	if p, ok := o.(*model.Port); ok && !v.admin && (p.HostID != "" || p.InterfaceName != "") {
		cp := *p
		cp.HostID, cp.InterfaceName = "", ""
		return &cp
	}
	return o
}
