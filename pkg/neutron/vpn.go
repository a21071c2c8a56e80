package neutron

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb"
)

// VPNaaS (vpnaas, vpn-endpoint-groups): IKE and IPsec policies, VPN
// services on routers with a gateway, endpoint groups and IPsec site
// connections, with neutron-vpnaas's reference validation. The tunnels
// themselves are a later issue's: no device driver serves a service yet,
// so services and connections are DOWN (not PENDING_CREATE, which would
// promise a driver and refuse their updates as neutron-vpnaas does).

// VPNPolicy is what IKE and IPsec policies have (Kind tells which).
type VPNPolicy struct {
	Std
	Kind                string `json:"kind"` // "ike" or "ipsec"
	AuthAlgorithm       string `json:"auth_algorithm"`
	EncryptionAlgorithm string `json:"encryption_algorithm"`
	PFS                 string `json:"pfs"`
	LifetimeValue       int    `json:"lifetime_value"`
	// IKE.
	Phase1Mode string `json:"phase1_negotiation_mode,omitempty"`
	IKEVersion string `json:"ike_version,omitempty"`
	// IPsec.
	TransformProtocol string `json:"transform_protocol,omitempty"`
	EncapsulationMode string `json:"encapsulation_mode,omitempty"`
}

// VPNService is a VPN service on a router.
type VPNService struct {
	Std
	RouterID     string `json:"router_id" nagare:"ref=neutron-router,ondelete=restrict,required"`
	SubnetID     string `json:"subnet_id,omitempty" nagare:"ref=neutron-subnet,ondelete=restrict"`
	AdminStateUp bool   `json:"admin_state_up"`
}

// EndpointGroup is a set of subnets or CIDRs a connection joins.
type EndpointGroup struct {
	Std
	Type      string   `json:"type"`
	Endpoints []string `json:"endpoints"`
}

// SiteConnection is an IPsec site-to-site connection.
type SiteConnection struct {
	Std
	VPNServiceID  string         `json:"vpnservice_id" nagare:"ref=neutron-vpn-service,ondelete=restrict,required"`
	IKEPolicyID   string         `json:"ikepolicy_id" nagare:"ref=neutron-ike-policy,ondelete=restrict,required"`
	IPsecPolicyID string         `json:"ipsecpolicy_id" nagare:"ref=neutron-ipsec-policy,ondelete=restrict,required"`
	LocalGroupID  string         `json:"local_ep_group_id,omitempty" nagare:"ref=neutron-endpoint-group,ondelete=restrict"`
	PeerGroupID   string         `json:"peer_ep_group_id,omitempty" nagare:"ref=neutron-endpoint-group,ondelete=restrict"`
	PeerAddress   string         `json:"peer_address"`
	PeerID        string         `json:"peer_id"`
	LocalID       string         `json:"local_id,omitempty"`
	PeerCIDRs     []netip.Prefix `json:"peer_cidrs,omitempty"`
	MTU           int            `json:"mtu"`
	Initiator     string         `json:"initiator"`
	PSK           string         `json:"psk"`
	DPDAction     string         `json:"dpd_action"`
	DPDInterval   int            `json:"dpd_interval"`
	DPDTimeout    int            `json:"dpd_timeout"`
	AdminStateUp  bool           `json:"admin_state_up"`
}

// IKEPolicy is an IKE policy.
type IKEPolicy struct{ VPNPolicy }

// IPsecPolicy is an IPsec policy.
type IPsecPolicy struct{ VPNPolicy }

func (p *VPNPolicy) policy() *VPNPolicy { return p }

// vpnPolicy is an IKE or an IPsec policy.
type vpnPolicy interface {
	Object
	policy() *VPNPolicy
}

var (
	IKEPolicyKind      = model.RegisterInternal("neutron-ike-policy", "neutron-ike-policies", "A VPNaaS IKE policy.", &IKEPolicy{}, nil)
	IPsecPolicyKind    = model.RegisterInternal("neutron-ipsec-policy", "neutron-ipsec-policies", "A VPNaaS IPsec policy.", &IPsecPolicy{}, nil)
	VPNServiceKind     = model.RegisterInternal("neutron-vpn-service", "neutron-vpn-services", "A VPNaaS service.", &VPNService{}, nil)
	EndpointGroupKind  = model.RegisterInternal("neutron-endpoint-group", "neutron-endpoint-groups", "A VPNaaS endpoint group.", &EndpointGroup{}, nil)
	SiteConnectionKind = model.RegisterInternal("neutron-ipsec-site-connection", "neutron-ipsec-site-connections", "An IPsec site connection.", &SiteConnection{}, nil)
)

// VPNStatus is the status of VPN objects with no device driver to serve
// them yet.
const VPNStatus = "DOWN"

// Requests: values already checked against neutron-lib's value lists by
// the API; nil is not given.
type (
	// VPNPolicyRequest is a create or update of an IKE or IPsec policy.
	VPNPolicyRequest struct {
		StdRequest
		Kind                                                            string
		AuthAlgorithm, EncryptionAlgorithm, PFS, Phase1Mode, IKEVersion *string
		TransformProtocol, EncapsulationMode                            *string
		LifetimeValue                                                   *int
	}
	// VPNServiceRequest is a create or update of a VPN service.
	VPNServiceRequest struct {
		StdRequest
		RouterID, SubnetID string // create only
		AdminStateUp       *bool
	}
	// EndpointGroupRequest is a create or update of an endpoint group.
	EndpointGroupRequest struct {
		StdRequest
		Type      string   // create only
		Endpoints []string // create only
	}
	// SiteConnectionRequest is a create or update of a connection.
	SiteConnectionRequest struct {
		StdRequest
		VPNServiceID, IKEPolicyID, IPsecPolicyID     string // create only
		LocalGroupID, PeerGroupID                    *string
		PeerAddress, PeerID, LocalID, PSK, Initiator *string
		PeerCIDRs                                    *[]netip.Prefix
		MTU                                          *int
		DPDAction                                    *string
		DPDInterval, DPDTimeout                      *int
		AdminStateUp                                 *bool
	}
)

func (r *VPNPolicyRequest) apply(p *VPNPolicy) {
	r.StdRequest.apply(&p.Std)
	for _, f := range []struct {
		dst *string
		v   *string
	}{{&p.AuthAlgorithm, r.AuthAlgorithm}, {&p.EncryptionAlgorithm, r.EncryptionAlgorithm}, {&p.PFS, r.PFS},
		{&p.Phase1Mode, r.Phase1Mode}, {&p.IKEVersion, r.IKEVersion}, {&p.TransformProtocol, r.TransformProtocol},
		{&p.EncapsulationMode, r.EncapsulationMode}} {
		set(f.dst, f.v)
	}
	set(&p.LifetimeValue, r.LifetimeValue)
}

// simpleCreate is the creation of an object that only needs checks in the
// transaction (check may be nil).
func simpleCreate[T Object](st Std, o T, check func(tx *nsdb.Tx, x T) error) *Creation {
	return creation(st.ProjectID, "", func(tx *nsdb.Tx) (model.Object, error) {
		x := clone(o)
		x.std().ID = newID()
		if check != nil {
			if err := check(tx, x); err != nil {
				return nil, err
			}
		}
		_, err := tx.Create(x)
		return x, err
	})
}

// clone copies the object a pointer points to (Creations may be retried).
func clone[T Object](o T) T { return model.Clone(o).(T) }

// PrepareVPNPolicy checks an IKE or IPsec policy's create.
func (s *Service) PrepareVPNPolicy(c *identity.Context, r VPNPolicyRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_"+r.Kind+"policy")
	if err != nil {
		return nil, err
	}
	p := VPNPolicy{Std: st, Kind: r.Kind, AuthAlgorithm: "sha1", EncryptionAlgorithm: "aes-128", PFS: "group5", LifetimeValue: 3600}
	if r.Kind == "ike" {
		p.Phase1Mode, p.IKEVersion = "main", "v1"
		r.apply(&p)
		return simpleCreate(st, &IKEPolicy{p}, nil), nil
	}
	p.TransformProtocol, p.EncapsulationMode = "esp", "tunnel"
	r.apply(&p)
	if err := ipsecSupports(&p); err != nil {
		return nil, err
	}
	return simpleCreate(st, &IPsecPolicy{p}, nil), nil
}

// updateVPNPolicy changes an IKE or IPsec policy no connection uses
// (neutron-vpnaas refuses any update of one in use).
func updateVPNPolicy[T vpnPolicy](ctx context.Context, s *Service, c *identity.Context, id string, r VPNPolicyRequest, ifRev int64) (T, error) {
	return modify(ctx, s, c, id, "update_"+r.Kind+"policy", ifRev, func(tx *nsdb.Tx, x T) error {
		p := x.policy()
		if err := vpnPolicyInUse(tx, p); err != nil {
			return err
		}
		r.apply(p)
		if err := ipsecSupports(p); err != nil {
			return err
		}
		s.touch(&p.Std)
		return tx.Put(x)
	})
}

// ipsecSupports is the *Swan drivers' validation: no ah-esp.
func ipsecSupports(p *VPNPolicy) error {
	if p.TransformProtocol == "ah-esp" {
		return NewError(BadRequest, "IpsecValidationFailure", "IPSec does not support IPsec Policy attribute transform_protocol with value '%s'", p.TransformProtocol)
	}
	return nil
}

func vpnPolicyInUse(tx *nsdb.Tx, p *VPNPolicy) error {
	users, err := tx.List(SiteConnectionKind, p.Kind+"policy_id", p.ID)
	if err != nil || len(users) == 0 {
		return err
	}
	if p.Kind == "ike" {
		return inUse("IKEPolicyInUse", "IKEPolicy %s is in use by existing IPsecSiteConnection and can't be updated or deleted", p.ID)
	}
	return inUse("IPsecPolicyInUse", "IPsecPolicy %s is in use by existing IPsecSiteConnection and can't be updated or deleted", p.ID)
}

// deleteVPNPolicy deletes an IKE or IPsec policy no connection uses.
func deleteVPNPolicy[T vpnPolicy](ctx context.Context, s *Service, c *identity.Context, id string, ifRev int64) error {
	var zero T
	_, err := modify(ctx, s, c, id, "delete_"+strings.TrimPrefix(model.KindOf(zero).Name, "neutron-"), ifRev, func(tx *nsdb.Tx, x T) error {
		if err := vpnPolicyInUse(tx, x.policy()); err != nil {
			return err
		}
		return tx.Delete(model.KindOf(x), id)
	})
	return err
}

// UpdateIKEPolicy changes an IKE policy.
func (s *Service) UpdateIKEPolicy(ctx context.Context, c *identity.Context, id string, r VPNPolicyRequest, ifRev int64) (*IKEPolicy, error) {
	return updateVPNPolicy[*IKEPolicy](ctx, s, c, id, r, ifRev)
}

// UpdateIPsecPolicy changes an IPsec policy.
func (s *Service) UpdateIPsecPolicy(ctx context.Context, c *identity.Context, id string, r VPNPolicyRequest, ifRev int64) (*IPsecPolicy, error) {
	return updateVPNPolicy[*IPsecPolicy](ctx, s, c, id, r, ifRev)
}

// DeleteIKEPolicy deletes an IKE policy.
func (s *Service) DeleteIKEPolicy(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	return deleteVPNPolicy[*IKEPolicy](ctx, s, c, id, ifRev)
}

// DeleteIPsecPolicy deletes an IPsec policy.
func (s *Service) DeleteIPsecPolicy(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	return deleteVPNPolicy[*IPsecPolicy](ctx, s, c, id, ifRev)
}

// PrepareVPNService checks a service's create: its router has a gateway,
// its subnet (legacy mode) is on the router.
func (s *Service) PrepareVPNService(c *identity.Context, r VPNServiceRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_vpnservice")
	if err != nil {
		return nil, err
	}
	v := &VPNService{Std: st, RouterID: r.RouterID, SubnetID: r.SubnetID, AdminStateUp: true}
	r.StdRequest.apply(&v.Std)
	set(&v.AdminStateUp, r.AdminStateUp)
	return simpleCreate(st, v, func(tx *nsdb.Tx, x *VPNService) error {
		rt, err := get[*Router](tx, c, x.RouterID)
		if err != nil {
			return err
		}
		if rt.GatewayNetworkID == "" {
			return NewError(BadRequest, "RouterIsNotExternal", "Router %s has no external network gateway set", rt.ID)
		}
		if x.SubnetID == "" {
			return nil
		}
		if _, err := get[*Subnet](tx, c, x.SubnetID); err != nil {
			return err
		}
		ports, err := listOf[*Port](tx, "router_id", rt.ID)
		if err != nil {
			return err
		}
		for _, p := range ports {
			if slices.ContainsFunc(p.FixedIPs, func(f FixedIP) bool { return f.SubnetID == x.SubnetID }) {
				return nil
			}
		}
		return NewError(BadRequest, "SubnetIsNotConnectedToRouter", "Subnet %s is not connected to Router %s", x.SubnetID, rt.ID)
	}), nil
}

// UpdateVPNService changes a service's name, description or admin state.
func (s *Service) UpdateVPNService(ctx context.Context, c *identity.Context, id string, r VPNServiceRequest, ifRev int64) (*VPNService, error) {
	return modify(ctx, s, c, id, "update_vpnservice", ifRev, func(tx *nsdb.Tx, v *VPNService) error {
		r.StdRequest.apply(&v.Std)
		set(&v.AdminStateUp, r.AdminStateUp)
		s.touch(&v.Std)
		return tx.Put(v)
	})
}

// DeleteVPNService deletes a service without connections.
func (s *Service) DeleteVPNService(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_vpnservice", ifRev, func(tx *nsdb.Tx, v *VPNService) error {
		if conns, err := tx.List(SiteConnectionKind, "vpnservice_id", id); err != nil {
			return err
		} else if len(conns) > 0 {
			return inUse("VPNServiceInUse", "VPNService %s is still in use", id)
		}
		return tx.Delete(VPNServiceKind, id)
	})
	return err
}

// VPNGateway is the external address of a service's router of an IP
// version (external_v4_ip, external_v6_ip).
func (r *Reader) VPNGateway(v *VPNService, ver int) string {
	rt := lookup[*Router](r, v.RouterID)
	if rt == nil || rt.GatewayPortID == "" {
		return ""
	}
	if p := r.Port(rt.GatewayPortID); p != nil {
		for _, f := range p.FixedIPs {
			if f.IPAddress.Is4() == (ver == 4) {
				return f.IPAddress.String()
			}
		}
	}
	return ""
}

// PrepareEndpointGroup checks an endpoint group's create: endpoints,
// unique, of its type (CIDRs; subnets that exist).
func (s *Service) PrepareEndpointGroup(c *identity.Context, r EndpointGroupRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_endpoint_group")
	if err != nil {
		return nil, err
	}
	if len(r.Endpoints) == 0 {
		return nil, NewError(BadRequest, "MissingEndpointForEndpointGroup", "No endpoints specified for endpoint group '%s'", r.Type)
	}
	bad := func(ep, why string) error {
		return NewError(BadRequest, "InvalidEndpointInEndpointGroup", "Endpoint '%s' is invalid for group type '%s': %s", ep, r.Type, why)
	}
	for i, ep := range r.Endpoints {
		if slices.Contains(r.Endpoints[:i], ep) {
			return nil, bad(ep, "Endpoints have to be unique")
		}
		if r.Type == "cidr" {
			if p, err := netip.ParsePrefix(ep); err != nil || p.Masked() != p {
				return nil, bad(ep, "Invalid CIDR")
			}
		}
		if r.Type == "subnet" {
			if !model.IsUUID(strings.ToLower(ep)) {
				return nil, bad(ep, "Invalid UUID")
			}
			r.Endpoints[i] = strings.ToLower(ep)
		}
	}
	g := &EndpointGroup{Std: st, Type: r.Type, Endpoints: r.Endpoints}
	r.StdRequest.apply(&g.Std)
	return simpleCreate(st, g, func(tx *nsdb.Tx, x *EndpointGroup) error {
		if x.Type != "subnet" {
			return nil
		}
		for _, ep := range x.Endpoints {
			if _, err := get[*Subnet](tx, c, ep); err != nil {
				return NewError(BadRequest, "NonExistingSubnetInEndpointGroup", "Subnet %s in endpoint group does not exist", ep)
			}
		}
		return nil
	}), nil
}

// UpdateEndpointGroup changes a group's name or description.
func (s *Service) UpdateEndpointGroup(ctx context.Context, c *identity.Context, id string, r EndpointGroupRequest, ifRev int64) (*EndpointGroup, error) {
	return rename[*EndpointGroup](ctx, s, c, id, "update_endpoint_group", r.StdRequest, ifRev)
}

// DeleteEndpointGroup deletes a group no connection uses.
func (s *Service) DeleteEndpointGroup(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_endpoint_group", ifRev, func(tx *nsdb.Tx, g *EndpointGroup) error {
		for _, f := range []string{"local_ep_group_id", "peer_ep_group_id"} {
			if users, err := tx.List(SiteConnectionKind, f, id); err != nil {
				return err
			} else if len(users) > 0 {
				return NewError(BadRequest, "EndpointGroupInUse", "Endpoint group %s is in use and cannot be deleted", id)
			}
		}
		return tx.Delete(EndpointGroupKind, id)
	})
	return err
}
