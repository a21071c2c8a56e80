package neutron

import (
	"encoding/json"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/neutron"
)

// VPNaaS (vpnaas, vpn-endpoint-groups): /vpn/ikepolicies, ipsecpolicies,
// vpnservices, endpoint-groups and ipsec-site-connections, with
// neutron-lib's value lists.

var (
	vpnAuthAlgorithms = []string{"sha1", "sha256", "sha384", "sha512", "aes-xcbc", "aes-cmac"}
	vpnEncryptions    = func() []string {
		out := []string{"3des", "aes-128", "aes-192", "aes-256"}
		for _, mode := range []string{"ccm", "gcm"} {
			for _, icv := range []string{"8", "12", "16"} {
				for _, bits := range []string{"128", "192", "256"} {
					out = append(out, "aes-"+bits+"-"+mode+"-"+icv)
				}
			}
		}
		return out
	}()
	vpnPFSes = func() []string {
		out := []string{"group2", "group5"}
		for g := 14; g <= 31; g++ {
			out = append(out, "group"+strconv.Itoa(g))
		}
		return out
	}()
	vpnValues = map[string][]string{
		"auth_algorithm": vpnAuthAlgorithms, "encryption_algorithm": vpnEncryptions, "pfs": vpnPFSes,
		"phase1_negotiation_mode": {"main", "aggressive"}, "ike_version": {"v1", "v2"},
		"transform_protocol": {"ah", "ah-esp", "esp"}, "encapsulation_mode": {"transport", "tunnel"},
		"initiator": {"bi-directional", "response-only"}, "type": {"cidr", "network", "router", "subnet", "vlan"},
	}
	vpnDPDActions = []string{"clear", "disabled", "hold", "restart", "restart-by-peer"}
)

// value reads an attribute whose validator is type:values.
func (b Body) value(name string, values []string) (*string, error) {
	v, ok, err := b.str(name, 0)
	if err != nil || !ok {
		if err != nil && b.isNull(name) {
			err = invalid(name, "'None' is not in %s", pyList(values))
		}
		return nil, err
	}
	if !slices.Contains(values, v) {
		return nil, invalid(name, "'%s' is not in %s", v, pyList(values))
	}
	return &v, nil
}

// dict reads a type:dict_or_empty attribute (null is {}): its keys among
// keys, each value decoded by the Body of the dict.
func (b Body) dict(name string, keys ...string) (Body, error) {
	if !b.has(name) || b.isNull(name) {
		return Body{}, nil
	}
	var d Body
	if err := json.Unmarshal(b[name], &d); err != nil {
		return nil, invalid(name, "'%s' is not a dictionary", rawText(b[name]))
	}
	var unexpected []string
	for _, k := range slices.Sorted(maps.Keys(d)) {
		if !slices.Contains(keys, k) {
			unexpected = append(unexpected, k)
		}
	}
	if len(unexpected) > 0 {
		return nil, invalid(name, "Unexpected keys supplied: %s", strings.Join(unexpected, ", "))
	}
	return d, nil
}

// nonNegative reads a type:non_negative integer of a dict.
func (b Body) nonNegative(name string) (*int, error) {
	n, _, ok, err := b.integer(name)
	if err != nil || !ok {
		return nil, err
	}
	if n < 0 {
		return nil, invalid(name, "'%d' should be non-negative", n)
	}
	return &n, nil
}

var vpnPolicyStd = attrs{"id": {}, "tenant_id": {post: true}, "project_id": {post: true}, "name": {post: true, put: true},
	"description": {post: true, put: true}, "auth_algorithm": {post: true, put: true}, "encryption_algorithm": {post: true, put: true},
	"lifetime": {post: true, put: true}, "pfs": {post: true, put: true}}

var ikePolicyAttrs = vpnPolicyStd.with(attrs{"phase1_negotiation_mode": {post: true, put: true}, "ike_version": {post: true, put: true}})

var ipsecPolicyAttrs = vpnPolicyStd.with(attrs{"transform_protocol": {post: true, put: true}, "encapsulation_mode": {post: true, put: true}})

// decodeVPNPolicy reads an IKE ("ike") or IPsec ("ipsec") policy.
func decodeVPNPolicy(kind string) decoder[neutron.VPNPolicyRequest] {
	return func(b Body, _ *identity.Context, _ bool) (neutron.VPNPolicyRequest, error) {
		r := neutron.VPNPolicyRequest{Kind: kind}
		var err error
		if r.StdRequest, err = decodeStd(b); err != nil {
			return r, err
		}
		for _, f := range []struct {
			name string
			dst  **string
		}{{"auth_algorithm", &r.AuthAlgorithm}, {"encryption_algorithm", &r.EncryptionAlgorithm}, {"pfs", &r.PFS},
			{"phase1_negotiation_mode", &r.Phase1Mode}, {"ike_version", &r.IKEVersion},
			{"transform_protocol", &r.TransformProtocol}, {"encapsulation_mode", &r.EncapsulationMode}} {
			if *f.dst, err = b.value(f.name, vpnValues[f.name]); err != nil {
				return r, err
			}
		}
		lt, err := b.dict("lifetime", "units", "value")
		if err != nil {
			return r, err
		}
		if _, err := lt.value("units", []string{"seconds"}); err != nil {
			return r, invalid("lifetime", "%s", neutron.AsError(err).Message)
		}
		if n, _, ok, err := lt.integer("value"); err != nil {
			return r, invalid("lifetime", "%s", neutron.AsError(err).Message)
		} else if ok {
			if n < 60 {
				return r, invalid("lifetime", "'%d' is too small - must be at least '60'", n)
			}
			r.LifetimeValue = &n
		}
		return r, nil
	}
}

func viewVPNPolicy(p *neutron.VPNPolicy) map[string]any {
	out := map[string]any{"id": p.ID, "tenant_id": p.ProjectID, "project_id": p.ProjectID, "name": p.Name, "description": p.Description,
		"auth_algorithm": p.AuthAlgorithm, "encryption_algorithm": p.EncryptionAlgorithm, "pfs": p.PFS,
		"lifetime": map[string]any{"units": "seconds", "value": p.LifetimeValue}}
	if p.Kind == "ike" {
		out["phase1_negotiation_mode"], out["ike_version"] = p.Phase1Mode, p.IKEVersion
	} else {
		out["transform_protocol"], out["encapsulation_mode"] = p.TransformProtocol, p.EncapsulationMode
	}
	return out
}

var vpnServiceAttrs = attrs{"id": {}, "tenant_id": {post: true}, "project_id": {post: true}, "name": {post: true, put: true},
	"description": {post: true, put: true}, "subnet_id": {post: true}, "router_id": {post: true, required: true},
	"admin_state_up": {post: true, put: true}, "external_v4_ip": {}, "external_v6_ip": {}, "status": {}}

func decodeVPNService(b Body, _ *identity.Context, post bool) (neutron.VPNServiceRequest, error) {
	var r neutron.VPNServiceRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if post {
		if r.RouterID, _, err = b.uuid("router_id"); err != nil {
			return r, err
		}
		if sub, err := optRef(b, "subnet_id"); err != nil {
			return r, err
		} else if sub != nil {
			r.SubnetID = *sub
		}
	}
	r.AdminStateUp, err = b.optBool("admin_state_up")
	return r, err
}

func viewVPNService(v *viewer, x *neutron.VPNService) map[string]any {
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "description": x.Description,
		"subnet_id": strOrNil(x.SubnetID), "router_id": x.RouterID, "admin_state_up": x.AdminStateUp,
		"external_v4_ip": strOrNil(v.VPNGateway(x, 4)), "external_v6_ip": strOrNil(v.VPNGateway(x, 6)), "status": neutron.VPNStatus}
}

var endpointGroupAttrs = attrs{"id": {}, "tenant_id": {post: true}, "project_id": {post: true}, "name": {post: true, put: true},
	"description": {post: true, put: true}, "type": {post: true, required: true}, "endpoints": {post: true}}

func decodeEndpointGroup(b Body, _ *identity.Context, post bool) (neutron.EndpointGroupRequest, error) {
	var r neutron.EndpointGroupRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if !post {
		return r, nil
	}
	t, err := b.value("type", vpnValues["type"])
	if err != nil {
		return r, err
	}
	r.Type = *t
	// convert_to_list: a single endpoint is a list of one.
	if b.has("endpoints") && !b.isNull("endpoints") {
		var one string
		if json.Unmarshal(b["endpoints"], &one) == nil {
			r.Endpoints = []string{one}
		} else if r.Endpoints, _, err = b.stringList("endpoints"); err != nil {
			return r, err
		}
	}
	return r, nil
}

func viewEndpointGroup(_ *viewer, x *neutron.EndpointGroup) map[string]any {
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "description": x.Description,
		"type": x.Type, "endpoints": nonNil(x.Endpoints)}
}

var siteConnectionAttrs = attrs{"id": {}, "tenant_id": {post: true}, "project_id": {post: true}, "name": {post: true, put: true},
	"description": {post: true, put: true}, "local_id": {post: true, put: true}, "peer_address": {post: true, put: true, required: true},
	"peer_id": {post: true, put: true, required: true}, "peer_cidrs": {post: true, put: true},
	"local_ep_group_id": {post: true, put: true}, "peer_ep_group_id": {post: true, put: true}, "route_mode": {},
	"mtu": {post: true, put: true}, "initiator": {post: true, put: true}, "auth_mode": {}, "psk": {post: true, put: true, required: true},
	"dpd": {post: true, put: true}, "admin_state_up": {post: true, put: true}, "status": {},
	"vpnservice_id": {post: true, required: true}, "ikepolicy_id": {post: true, required: true}, "ipsecpolicy_id": {post: true, required: true}}

func decodeSiteConnection(b Body, _ *identity.Context, post bool) (neutron.SiteConnectionRequest, error) {
	var r neutron.SiteConnectionRequest
	var err error
	if r.StdRequest, err = decodeStd(b); err != nil {
		return r, err
	}
	if post {
		for _, f := range []struct {
			name string
			dst  *string
		}{{"vpnservice_id", &r.VPNServiceID}, {"ikepolicy_id", &r.IKEPolicyID}, {"ipsecpolicy_id", &r.IPsecPolicyID}} {
			if *f.dst, _, err = b.uuid(f.name); err != nil {
				return r, err
			}
		}
	}
	for _, f := range []struct {
		name string
		dst  **string
	}{{"peer_address", &r.PeerAddress}, {"peer_id", &r.PeerID}, {"local_id", &r.LocalID}, {"psk", &r.PSK}} {
		if *f.dst, err = b.optStr(f.name, 0); err != nil {
			return r, err
		}
	}
	if r.Initiator, err = b.value("initiator", vpnValues["initiator"]); err != nil {
		return r, err
	}
	if r.LocalGroupID, err = optRef(b, "local_ep_group_id"); err != nil {
		return r, err
	}
	if r.PeerGroupID, err = optRef(b, "peer_ep_group_id"); err != nil {
		return r, err
	}
	if b.has("peer_cidrs") {
		cidrs := []netip.Prefix{}
		if !b.isNull("peer_cidrs") {
			var xs []string
			var one string
			if json.Unmarshal(b["peer_cidrs"], &one) == nil {
				xs = []string{one}
			} else if xs, _, err = b.stringList("peer_cidrs"); err != nil {
				return r, err
			}
			for _, x := range xs {
				p, err := parseCIDR(x)
				if err != nil {
					return r, invalid("peer_cidrs", "%s", err.Error())
				}
				if !slices.Contains(cidrs, p) {
					cidrs = append(cidrs, p)
				}
			}
		}
		r.PeerCIDRs = &cidrs
	}
	if n, null, ok, err := b.integer("mtu"); err != nil || null {
		if null {
			err = invalid("mtu", "'None' is not an integer")
		}
		return r, err
	} else if ok {
		if n < 0 {
			return r, invalid("mtu", "'%d' should be non-negative", n)
		}
		r.MTU = &n
	}
	dpd, err := b.dict("dpd", "action", "interval", "timeout")
	if err != nil {
		return r, err
	}
	if r.DPDAction, err = dpd.value("action", vpnDPDActions); err != nil {
		return r, invalid("dpd", "%s", neutron.AsError(err).Message)
	}
	if r.DPDInterval, err = dpd.nonNegative("interval"); err != nil {
		return r, invalid("dpd", "%s", neutron.AsError(err).Message)
	}
	if r.DPDTimeout, err = dpd.nonNegative("timeout"); err != nil {
		return r, invalid("dpd", "%s", neutron.AsError(err).Message)
	}
	r.AdminStateUp, err = b.optBool("admin_state_up")
	return r, err
}

func viewSiteConnection(_ *viewer, x *neutron.SiteConnection) map[string]any {
	cidrs := make([]string, len(x.PeerCIDRs))
	for i, p := range x.PeerCIDRs {
		cidrs[i] = p.String()
	}
	return map[string]any{"id": x.ID, "tenant_id": x.ProjectID, "project_id": x.ProjectID, "name": x.Name, "description": x.Description,
		"local_id": x.LocalID, "peer_address": x.PeerAddress, "peer_id": x.PeerID, "peer_cidrs": cidrs,
		"local_ep_group_id": strOrNil(x.LocalGroupID), "peer_ep_group_id": strOrNil(x.PeerGroupID), "route_mode": "static",
		"mtu": x.MTU, "initiator": x.Initiator, "auth_mode": "psk", "psk": x.PSK,
		"dpd":            map[string]any{"action": x.DPDAction, "interval": x.DPDInterval, "timeout": x.DPDTimeout},
		"admin_state_up": x.AdminStateUp, "status": neutron.VPNStatus, "vpnservice_id": x.VPNServiceID,
		"ikepolicy_id": x.IKEPolicyID, "ipsecpolicy_id": x.IPsecPolicyID}
}
