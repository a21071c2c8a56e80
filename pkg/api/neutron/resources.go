package neutron

import (
	"context"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/neutron"
)

// resource is one collection under /v2.0 and everything the API knows of
// it: its names, its attribute map, how a request body becomes the
// domain's request and which service method takes it, and how an object
// is shown.
type resource struct {
	singular, plural string
	path             string // the URL segment, where it is not plural
	kind             *model.Kind
	attrs            attrs
	view             func(*viewer, model.Object) map[string]any
	prepare          func(c *identity.Context, b Body) (*neutron.Creation, error)
	update           func(ctx context.Context, c *identity.Context, id string, b Body, rev int64) (model.Object, error) // nil: no PUT
	delete           func(ctx context.Context, c *identity.Context, id string, rev int64) error
	// narrow are filters the store answers from its reverse index.
	narrow   []string
	taggable bool // standard-attr-tag's /tags routes
	bulk     bool // POST {"<plural>": [...]} creates several, all or nothing
	// listAll and getOne replace the reader's list and get for a
	// collection that shows objects not stored as such (a network's
	// first segment).
	listAll func(ctx context.Context, c *identity.Context) ([]model.Object, error)
	getOne  func(ctx context.Context, c *identity.Context, id string) (model.Object, error)
}

// resource is the row of a resource by its singular name.
func (a *API) resource(singular string) *resource {
	for _, r := range a.res {
		if r.singular == singular {
			return r
		}
	}
	panic("api/neutron: no resource " + singular)
}

func (r *resource) urlPath() string {
	if r.path != "" {
		return r.path
	}
	return r.plural
}

// resources are the collections, one row each.
func (a *API) resources() []*resource {
	s := a.svc
	return []*resource{
		{singular: "network", plural: "networks", kind: neutron.NetworkKind, attrs: networkAttrs, view: viewAs(viewNetwork),
			prepare: prepares(decodeNetwork, s.PrepareNetwork), update: updates(decodeNetwork, s.UpdateNetwork), delete: s.DeleteNetwork,
			taggable: true, bulk: true},
		{singular: "subnet", plural: "subnets", kind: neutron.SubnetKind, attrs: subnetAttrs, view: viewAs(viewSubnet),
			prepare: prepares(decodeSubnet, s.PrepareSubnet), update: updates(decodeSubnet, s.UpdateSubnet), delete: s.DeleteSubnet,
			narrow: []string{"network_id"}, taggable: true, bulk: true},
		{singular: "port", plural: "ports", kind: neutron.PortKind, attrs: portAttrs, view: viewAs(viewPort),
			prepare: prepares(decodePort, s.PreparePort), update: updates(decodePort, s.UpdatePort), delete: s.DeletePort,
			narrow: []string{"network_id"}, taggable: true, bulk: true},
		{singular: "router", plural: "routers", kind: neutron.RouterKind, attrs: routerAttrs, view: viewAs(viewRouter),
			prepare: prepares(decodeRouter, s.PrepareRouter), update: updates(decodeRouter, s.UpdateRouter), delete: s.DeleteRouter,
			taggable: true},
		{singular: "floatingip", plural: "floatingips", kind: neutron.FloatingIPKind, attrs: floatingIPAttrs, view: viewAs(viewFloatingIP),
			prepare: prepares(decodeFloatingIP, s.PrepareFloatingIP), update: updates(decodeFloatingIP, s.UpdateFloatingIP), delete: s.DeleteFloatingIP,
			narrow: []string{"port_id", "router_id", "floating_network_id"}, taggable: true},
		{singular: "security_group", plural: "security_groups", path: "security-groups", kind: neutron.SecurityGroupKind,
			attrs: groupAttrs, view: viewAs(viewGroup),
			prepare: prepares(decodeGroup, s.PrepareSecurityGroup), update: updates(decodeGroup, s.UpdateSecurityGroup), delete: s.DeleteSecurityGroup,
			taggable: true, bulk: true},
		{singular: "security_group_rule", plural: "security_group_rules", path: "security-group-rules", kind: neutron.SecurityGroupRuleKind,
			attrs: ruleAttrs, view: viewAs(viewRule),
			prepare: prepares(decodeRule, s.PrepareSecurityGroupRule), delete: s.DeleteSecurityGroupRule,
			narrow: []string{"security_group_id"}, bulk: true},
		{singular: "rbac_policy", plural: "rbac_policies", path: "rbac-policies", kind: neutron.RBACPolicyKind, attrs: rbacAttrs,
			view: viewAs(viewRBAC), prepare: prepares(decodeRBAC, s.PrepareRBACPolicy), update: updates(decodeRBAC, s.UpdateRBACPolicy),
			delete: s.DeleteRBACPolicy},
		{singular: "address_scope", plural: "address_scopes", path: "address-scopes", kind: neutron.AddressScopeKind, attrs: scopeAttrs,
			view: viewAs(viewAddressScope), prepare: prepares(decodeAddressScope, s.PrepareAddressScope),
			update: updates(decodeAddressScope, s.UpdateAddressScope), delete: s.DeleteAddressScope},
		{singular: "subnetpool", plural: "subnetpools", kind: neutron.SubnetPoolKind, attrs: poolAttrs, view: viewAs(viewSubnetPool),
			prepare: prepares(decodeSubnetPool, s.PrepareSubnetPool), update: updates(decodeSubnetPool, s.UpdateSubnetPool),
			delete: s.DeleteSubnetPool, narrow: []string{"address_scope_id"}, taggable: true, bulk: true},
		{singular: "address_group", plural: "address_groups", path: "address-groups", kind: neutron.AddressGroupKind, attrs: addressGroupAttrs,
			view: viewAs(viewAddressGroup), prepare: prepares(decodeAddressGroup, s.PrepareAddressGroup),
			update: updates(decodeAddressGroup, s.UpdateAddressGroup), delete: s.DeleteAddressGroup},
		{singular: "policy", plural: "policies", path: "qos/policies", kind: neutron.QoSPolicyKind, attrs: qosPolicyAttrs,
			view: viewAs(viewQoSPolicy), prepare: prepares(decodeQoSPolicy, s.PrepareQoSPolicy), update: updates(decodeQoSPolicy, s.UpdateQoSPolicy),
			delete: s.DeleteQoSPolicy, taggable: true},
		{singular: "trunk", plural: "trunks", kind: neutron.TrunkKind, attrs: trunkAttrs, view: viewAs(viewTrunk),
			prepare: prepares(decodeTrunk, s.PrepareTrunk), update: updates(decodeTrunk, s.UpdateTrunk), delete: s.DeleteTrunk,
			narrow: []string{"port_id"}, taggable: true},
		{singular: "segment", plural: "segments", kind: neutron.NetSegmentKind, attrs: segmentAttrs, view: viewAs(viewSegment),
			prepare: prepares(decodeSegmentReq, s.PrepareSegment), update: updates(decodeSegmentReq, s.UpdateSegment), delete: s.DeleteSegment,
			listAll: func(ctx context.Context, c *identity.Context) ([]model.Object, error) {
				return objects(s.Segments(ctx, c))
			},
			getOne: func(ctx context.Context, c *identity.Context, id string) (model.Object, error) {
				return object(s.GetSegment(ctx, c, id))
			}},
		{singular: "bgp_speaker", plural: "bgp_speakers", path: "bgp-speakers", kind: neutron.BGPSpeakerKind, attrs: speakerAttrs,
			view: viewAs(viewSpeaker), prepare: prepares(decodeSpeaker, s.PrepareBGPSpeaker), update: updates(decodeSpeaker, s.UpdateBGPSpeaker),
			delete: s.DeleteBGPSpeaker},
		{singular: "bgp_peer", plural: "bgp_peers", path: "bgp-peers", kind: neutron.BGPPeerKind, attrs: peerAttrs,
			view: viewAs(viewPeer), prepare: prepares(decodePeer, s.PrepareBGPPeer), update: updates(decodePeer, s.UpdateBGPPeer),
			delete: s.DeleteBGPPeer},
		{singular: "bgpvpn", plural: "bgpvpns", path: "bgpvpn/bgpvpns", kind: neutron.BGPVPNKind, attrs: bgpvpnAttrs,
			view: viewAs(viewBGPVPN), prepare: prepares(decodeBGPVPN, s.PrepareBGPVPN), update: updates(decodeBGPVPN, s.UpdateBGPVPN),
			delete: s.DeleteBGPVPN},
		{singular: "firewall_rule", plural: "firewall_rules", path: "fwaas/firewall_rules", kind: neutron.FirewallRuleKind, attrs: fwRuleAttrs,
			view: viewAs(viewFWRule), prepare: prepares(decodeFWRule, s.PrepareFirewallRule), update: updates(decodeFWRule, s.UpdateFirewallRule),
			delete: s.DeleteFirewallRule},
		{singular: "firewall_policy", plural: "firewall_policies", path: "fwaas/firewall_policies", kind: neutron.FirewallPolicyKind,
			attrs: fwPolicyAttrs, view: viewAs(viewFWPolicy), prepare: prepares(decodeFWPolicy, s.PrepareFirewallPolicy),
			update: updates(decodeFWPolicy, s.UpdateFirewallPolicy), delete: s.DeleteFirewallPolicy},
		{singular: "firewall_group", plural: "firewall_groups", path: "fwaas/firewall_groups", kind: neutron.FirewallGroupKind,
			attrs: fwGroupAttrs, view: viewAs(viewFWGroup), prepare: prepares(decodeFWGroup, s.PrepareFirewallGroup),
			update: updates(decodeFWGroup, s.UpdateFirewallGroup), delete: s.DeleteFirewallGroup},
		{singular: "ikepolicy", plural: "ikepolicies", path: "vpn/ikepolicies", kind: neutron.IKEPolicyKind, attrs: ikePolicyAttrs,
			view:    viewAs(func(_ *viewer, x *neutron.IKEPolicy) map[string]any { return viewVPNPolicy(&x.VPNPolicy) }),
			prepare: prepares(decodeVPNPolicy("ike"), s.PrepareVPNPolicy),
			update:  updates(decodeVPNPolicy("ike"), s.UpdateIKEPolicy), delete: s.DeleteIKEPolicy},
		{singular: "ipsecpolicy", plural: "ipsecpolicies", path: "vpn/ipsecpolicies", kind: neutron.IPsecPolicyKind, attrs: ipsecPolicyAttrs,
			view:    viewAs(func(_ *viewer, x *neutron.IPsecPolicy) map[string]any { return viewVPNPolicy(&x.VPNPolicy) }),
			prepare: prepares(decodeVPNPolicy("ipsec"), s.PrepareVPNPolicy),
			update:  updates(decodeVPNPolicy("ipsec"), s.UpdateIPsecPolicy), delete: s.DeleteIPsecPolicy},
		{singular: "vpnservice", plural: "vpnservices", path: "vpn/vpnservices", kind: neutron.VPNServiceKind, attrs: vpnServiceAttrs,
			view: viewAs(viewVPNService), prepare: prepares(decodeVPNService, s.PrepareVPNService),
			update: updates(decodeVPNService, s.UpdateVPNService), delete: s.DeleteVPNService, narrow: []string{"router_id"}},
		{singular: "endpoint_group", plural: "endpoint_groups", path: "vpn/endpoint-groups", kind: neutron.EndpointGroupKind,
			attrs: endpointGroupAttrs, view: viewAs(viewEndpointGroup), prepare: prepares(decodeEndpointGroup, s.PrepareEndpointGroup),
			update: updates(decodeEndpointGroup, s.UpdateEndpointGroup), delete: s.DeleteEndpointGroup},
		{singular: "ipsec_site_connection", plural: "ipsec_site_connections", path: "vpn/ipsec-site-connections",
			kind: neutron.SiteConnectionKind, attrs: siteConnectionAttrs, view: viewAs(viewSiteConnection),
			prepare: prepares(decodeSiteConnection, s.PrepareSiteConnection), update: updates(decodeSiteConnection, s.UpdateSiteConnection),
			delete: s.DeleteSiteConnection, narrow: []string{"vpnservice_id"}},
		{singular: "tap_service", plural: "tap_services", path: "taas/tap_services", kind: neutron.TapServiceKind, attrs: tapServiceAttrs,
			view: viewAs(viewTapService), prepare: prepares(decodeTapService, s.PrepareTapService),
			update: updates(decodeTapService, s.UpdateTapService), delete: s.DeleteTapService, narrow: []string{"port_id"}},
		{singular: "tap_flow", plural: "tap_flows", path: "taas/tap_flows", kind: neutron.TapFlowKind, attrs: tapFlowAttrs,
			view: viewAs(viewTapFlow), prepare: prepares(decodeTapFlow, s.PrepareTapFlow),
			update: updates(decodeTapFlow, s.UpdateTapFlow), delete: s.DeleteTapFlow, narrow: []string{"tap_service_id", "source_port"}},
		{singular: "tap_mirror", plural: "tap_mirrors", path: "taas/tap_mirrors", kind: neutron.TapMirrorKind, attrs: tapMirrorAttrs,
			view: viewAs(viewTapMirror), prepare: prepares(decodeTapMirror, s.PrepareTapMirror),
			update: updates(decodeTapMirror, s.UpdateTapMirror), delete: s.DeleteTapMirror, narrow: []string{"port_id"}},
	}
}

// decoder turns a body its attribute map admitted into the domain's
// request; post tells a create from an update, and the caller is there
// for the attribute policies of nested attributes.
type decoder[R any] func(b Body, c *identity.Context, post bool) (R, error)

// prepares chains a decoder and a service's prepare.
func prepares[R any](decode decoder[R], prepare func(*identity.Context, R) (*neutron.Creation, error)) func(*identity.Context, Body) (*neutron.Creation, error) {
	return func(c *identity.Context, b Body) (*neutron.Creation, error) {
		req, err := decode(b, c, true)
		if err != nil {
			return nil, err
		}
		return prepare(c, req)
	}
}

// updates chains a decoder and a service's update.
func updates[R any, T model.Object](decode decoder[R], update func(context.Context, *identity.Context, string, R, int64) (T, error)) func(context.Context, *identity.Context, string, Body, int64) (model.Object, error) {
	return func(ctx context.Context, c *identity.Context, id string, b Body, rev int64) (model.Object, error) {
		req, err := decode(b, c, false)
		if err != nil {
			return nil, err
		}
		return update(ctx, c, id, req, rev)
	}
}
