package neutron

import (
	"context"
	"errors"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// NativeScope names the native objects ("kind/id", e.g. "bridge/<uuid>")
// that translate the Neutron objects c may see under Neutron's own get
// policies: its networks, subnets, ports, routers, security groups and
// floating IPs, plus the shared and external networks Neutron shows it. It
// is how views of the native topology (the dashboard) scope a project
// member to their project without a policy of their own: what the member
// sees natively is exactly what their Neutron objects wrote. Callers decide
// what to do for administrators, who see everything.
//
// An external network's bridge is in scope (Neutron shows the network), its
// other projects' ports are not (Neutron shows them to nobody but their
// owners), and a gateway port, which belongs to no project, is the caller's
// through its router (see the dashboard's closure over router ports).
func (s *Service) NativeScope(ctx context.Context, c *identity.Context) (map[string]bool, error) {
	out := map[string]bool{}
	err := s.Read(ctx, c, func(r *Reader) error {
		var ids []nsdb.ObjectID
		for _, k := range []*model.Kind{NetworkKind, SubnetKind, PortKind, RouterKind, SecurityGroupKind, FloatingIPKind} {
			objs, err := r.List(k, "", "")
			if err != nil {
				return err
			}
			for _, o := range objs {
				ids = append(ids, nsdb.ObjectID{Kind: TranslationKind, ID: DerivedID("translation", o.GetMeta().ID)})
			}
		}
		if err := r.tx.Prefetch(ids...); err != nil {
			return err
		}
		for _, id := range ids {
			o, err := r.tx.Get(TranslationKind, id.ID)
			if errors.Is(err, model.ErrNotFound) {
				continue // translated to nothing (an IPv6 subnet, a floating IP's port)
			}
			if err != nil {
				return err
			}
			for key := range o.(*Translation).Owned {
				out[key] = true
			}
		}
		return nil
	})
	return out, err
}
