package neutron

import (
	"encoding/json"
	"regexp"
	"strconv"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// Tap as a Service (taas, taas-vlan-filter, tap-mirror,
// tap-mirror-both-direction): /taas/tap_services, tap_flows and
// tap_mirrors.

var tapServiceAttrs = attrs{"id": {}, "tenant_id": {post: true}, "project_id": {post: true}, "name": {post: true, put: true},
	"description": {post: true, put: true}, "port_id": {post: true, required: true}, "status": {}}

func decodeTapService(b Body, _ *identity.Context, post bool) (neutron.TapServiceRequest, error) {
	var r neutron.TapServiceRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil || !post {
		return r, err
	}
	r.PortID, _, err = b.uuid("port_id")
	return r, err
}

func viewTapService(_ *viewer, x *neutron.TapService) map[string]any {
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "description": x.Description,
		"port_id": x.PortID, "status": neutron.TapStatus}
}

var tapFlowAttrs = attrs{"id": {}, "tenant_id": {post: true}, "project_id": {post: true}, "name": {post: true, put: true},
	"description": {post: true, put: true}, "tap_service_id": {post: true, required: true}, "source_port": {post: true, required: true},
	"direction": {post: true, required: true}, "status": {}, "vlan_filter": {post: true}}

// vlanFilter is taas-vlan-filter's RANGE_REGEX.
var vlanFilter = regexp.MustCompile(`^([0-9]+(-[0-9]+)?)(,([0-9]+(-[0-9]+)?))*$`)

func decodeTapFlow(b Body, _ *identity.Context, post bool) (neutron.TapFlowRequest, error) {
	var r neutron.TapFlowRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil || !post {
		return r, err
	}
	if r.TapServiceID, _, err = b.uuid("tap_service_id"); err != nil {
		return r, err
	}
	if r.SourcePort, _, err = b.uuid("source_port"); err != nil {
		return r, err
	}
	d, err := b.value("direction", []string{"IN", "OUT", "BOTH"})
	if err != nil {
		return r, err
	}
	r.Direction = *d
	if b.has("vlan_filter") && !b.isNull("vlan_filter") {
		v, _, err := b.str("vlan_filter", 1024)
		if err != nil {
			return r, err
		}
		if !vlanFilter.MatchString(v) {
			return r, invalid("vlan_filter", "'%s' is not a valid input", v)
		}
		r.VLANFilter = v
	}
	return r, nil
}

func viewTapFlow(_ *viewer, x *neutron.TapFlow) map[string]any {
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "description": x.Description,
		"tap_service_id": x.TapServiceID, "source_port": x.SourcePort, "direction": x.Direction, "status": neutron.TapStatus,
		"vlan_filter": strOrNil(x.VLANFilter)}
}

var tapMirrorAttrs = attrs{"id": {}, "tenant_id": {post: true}, "project_id": {post: true}, "name": {post: true, put: true},
	"description": {post: true, put: true}, "port_id": {post: true, required: true}, "directions": {post: true, required: true},
	"remote_ip": {post: true, required: true}, "mirror_type": {post: true, required: true}}

func decodeTapMirror(b Body, _ *identity.Context, post bool) (neutron.TapMirrorRequest, error) {
	var r neutron.TapMirrorRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil || !post {
		return r, err
	}
	if r.PortID, _, err = b.uuid("port_id"); err != nil {
		return r, err
	}
	if b.isNull("directions") {
		return r, invalid("directions", "'None' is not a dictionary")
	}
	dirs, err := b.dict("directions", "IN", "OUT", "BOTH")
	if err != nil {
		return r, err
	}
	r.Directions = map[string]int{}
	for _, k := range []string{"IN", "OUT", "BOTH"} {
		raw, ok := dirs[k]
		if !ok {
			continue
		}
		var x any
		_ = json.Unmarshal(raw, &x)
		n, ok := tunnelID(x)
		if !ok {
			return r, invalid("directions", "'%s' is not an integer", rawText(raw))
		}
		_, quoted := x.(string)
		r.Quoted = r.Quoted || quoted
		r.Directions[k] = n
	}
	if r.RemoteIP, _, err = b.ip("remote_ip"); err != nil {
		return r, err
	}
	t, err := b.value("mirror_type", []string{"erspanv1", "gre"})
	if err != nil {
		return r, err
	}
	r.MirrorType = *t
	return r, nil
}

// tunnelID reads validate_integer's integers: a number without a
// fraction or a string of one.
func tunnelID(x any) (int, bool) {
	switch v := x.(type) {
	case float64:
		return int(v), v == float64(int(v))
	case string:
		n, err := strconv.Atoi(v)
		return n, err == nil
	}
	return 0, false
}

func viewTapMirror(_ *viewer, x *neutron.TapMirror) map[string]any {
	dirs := map[string]any{}
	for k, v := range x.Directions {
		if x.Quoted {
			dirs[k] = strconv.Itoa(v)
		} else {
			dirs[k] = v
		}
	}
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "description": x.Description,
		"port_id": x.PortID, "directions": dirs, "remote_ip": x.RemoteIP.String(), "mirror_type": x.MirrorType}
}
