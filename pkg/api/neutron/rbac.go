package neutron

import (
	"regexp"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// RBAC policies (rbac-policies and the rbac-* extensions of each type).

var rbacAttrs = attrs{
	"id":             {},
	"tenant_id":      {post: true},
	"project_id":     {post: true},
	"object_type":    {post: true, required: true},
	"object_id":      {post: true, required: true},
	"target_tenant":  {post: true, put: true, required: true},
	"action":         {post: true, required: true},
	"target_project": {},
}

// uuidLike is oslo's is_uuid_like: a UUID with or without dashes.
var uuidLike = regexp.MustCompile(`^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$`)

func decodeRBAC(b Body, _ *identity.Context, post bool) (neutron.RBACRequest, error) {
	var r neutron.RBACRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if post {
		t, _, err := b.str("object_type", 255)
		if err != nil {
			return r, err
		}
		if r.ObjectType = strings.ToLower(strings.TrimSpace(t)); !slices.Contains(neutron.RBACObjectTypes(), r.ObjectType) {
			return r, neutron.InvalidInput("'%s' is not a valid RBAC object type", t)
		}
		if r.ObjectID, _, err = b.uuid("object_id"); err != nil {
			return r, err
		}
		a, _, err := b.str("action", 255)
		if err != nil {
			return r, err
		}
		if a != neutron.AccessShared && a != neutron.AccessExternal {
			return r, invalid("action", "'%s' is not in ['access_as_external', 'access_as_shared']", a)
		}
		r.Action = a
	}
	if b.has("target_tenant") {
		t, _, err := b.str("target_tenant", 255)
		if err != nil {
			return r, err
		}
		if t != neutron.AnyProject && !uuidLike.MatchString(t) {
			return r, neutron.InvalidInput("'%s' is not a valid target project ID; expected a UUID or '*'", t)
		}
		r.Target = t
	}
	return r, nil
}

func viewRBAC(_ *viewer, x *neutron.RBACPolicy) map[string]any {
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "object_type": x.ObjectType,
		"object_id": x.ObjectID, "target_tenant": x.Target, "target_project": x.Target, "action": x.Action}
}
