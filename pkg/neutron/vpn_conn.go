package neutron

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/nagare/nagare/pkg/identity"
	"github.com/nagare/nagare/pkg/nsdb"
)

// IPsec site connections and neutron-vpnaas's reference validator.

func (r *SiteConnectionRequest) apply(x *SiteConnection) {
	r.StdRequest.apply(&x.Std)
	set(&x.LocalGroupID, r.LocalGroupID)
	set(&x.PeerGroupID, r.PeerGroupID)
	for _, f := range []struct {
		dst *string
		v   *string
	}{{&x.PeerAddress, r.PeerAddress}, {&x.PeerID, r.PeerID}, {&x.LocalID, r.LocalID}, {&x.PSK, r.PSK}, {&x.Initiator, r.Initiator},
		{&x.DPDAction, r.DPDAction}} {
		set(f.dst, f.v)
	}
	set(&x.PeerCIDRs, r.PeerCIDRs)
	set(&x.MTU, r.MTU)
	set(&x.DPDInterval, r.DPDInterval)
	set(&x.DPDTimeout, r.DPDTimeout)
	set(&x.AdminStateUp, r.AdminStateUp)
}

// checkConnection is neutron-vpnaas's validate_ipsec_site_connection and
// validate_ipsec_conn_optional_args: legacy mode (the service has a
// subnet: peer CIDRs, no groups) or endpoint groups (local subnets on the
// router, peer CIDRs, both needed), one IP version throughout, the peer
// address an address of a family the router's gateway has, DPD timeout
// over its interval, an MTU the family allows.
func (s *Service) checkConnection(tx *nsdb.Tx, c *identity.Context, x *SiteConnection) error {
	v, err := get[*VPNService](tx, c, x.VPNServiceID)
	if err != nil {
		return err
	}
	if _, err := get[*IKEPolicy](tx, c, x.IKEPolicyID); err != nil {
		return err
	}
	if _, err := get[*IPsecPolicy](tx, c, x.IPsecPolicyID); err != nil {
		return err
	}
	var local, peer int
	versionOf := func(p netip.Prefix) int {
		if p.Addr().Is4() {
			return 4
		}
		return 6
	}
	if v.SubnetID != "" {
		var which []string
		if x.LocalGroupID != "" {
			which = append(which, "local")
		}
		if x.PeerGroupID != "" {
			which = append(which, "peer")
		}
		switch {
		case len(x.PeerCIDRs) == 0:
			return NewError(BadRequest, "MissingPeerCidrs", "Missing peer CIDRs for IPsec site-to-site connection")
		case len(which) > 0:
			return NewError(BadRequest, "InvalidEndpointGroup", "Endpoint group%s %s cannot be specified, when VPN Service has subnet specified", plural(which), strings.Join(which, " and "))
		}
		sub, err := get[*Subnet](tx, c, v.SubnetID)
		if err != nil {
			return err
		}
		local = sub.IPVersion
		for _, p := range x.PeerCIDRs {
			if peer != 0 && versionOf(p) != peer {
				return NewError(BadRequest, "MixedIPVersionsForPeerCidrs", "Peer CIDRs do not have the same IP version, as required for IPSec site-to-site connection")
			}
			peer = versionOf(p)
		}
	} else {
		var which []string
		if x.LocalGroupID == "" {
			which = append(which, "local")
		}
		if x.PeerGroupID == "" {
			which = append(which, "peer")
		}
		switch {
		case len(x.PeerCIDRs) > 0:
			return NewError(BadRequest, "PeerCidrsInvalid", "Peer CIDRs cannot be specified, when using endpoint groups")
		case len(which) > 0:
			return NewError(BadRequest, "MissingRequiredEndpointGroup", "Missing endpoint group%s %s for IPSec site-to-site connection", plural(which), strings.Join(which, " and "))
		}
		if local, err = s.localGroupVersion(tx, c, v, x.LocalGroupID); err != nil {
			return err
		}
		g, err := get[*EndpointGroup](tx, c, x.PeerGroupID)
		if err != nil {
			return err
		}
		if g.Type != "cidr" {
			return NewError(BadRequest, "WrongEndpointGroupType", "Endpoint group %s type is '%s' and should be 'cidr'", g.ID, g.Type)
		}
		for _, ep := range g.Endpoints {
			p := netip.MustParsePrefix(ep)
			if peer != 0 && versionOf(p) != peer {
				return NewError(BadRequest, "MixedIPVersionsForIPSecEndpoints", "Endpoints in group %s do not have the same IP version, as required for IPSec site-to-site connection", g.ID)
			}
			peer = versionOf(p)
		}
	}
	if local != peer {
		return NewError(BadRequest, "MixedIPVersionsForIPSecConnection", "IP versions are not compatible between peer and local endpoints")
	}
	if x.DPDTimeout <= x.DPDInterval {
		return NewError(BadRequest, "IPsecSiteConnectionDpdIntervalValueError", "ipsec_site_connection dpd_timeout is equal to or less than dpd_interval")
	}
	if min := map[int]int{4: 68, 6: 1280}[local]; x.MTU < min {
		return NewError(BadRequest, "IPsecSiteConnectionMtuError", "ipsec_site_connection MTU %d is too small for ipv%d", x.MTU, local)
	}
	addr, err := netip.ParseAddr(x.PeerAddress)
	if err != nil {
		// neutron-vpnaas resolves a name with the server's resolver;
		// Nagare's servers resolve none.
		return NewError(BadRequest, "VPNPeerAddressNotResolved", "Peer address %s cannot be resolved", x.PeerAddress)
	}
	rt, err := get[*Router](tx, c, v.RouterID)
	if err != nil {
		return err
	}
	if gw, err := tx.Get(PortKind, rt.GatewayPortID); err == nil {
		for _, f := range gw.(*Port).FixedIPs {
			if f.IPAddress.Is4() == addr.Is4() {
				return nil
			}
		}
	}
	family := "IPv4"
	if !addr.Is4() {
		family = "IPv6"
	}
	return NewError(BadRequest, "ExternalNetworkHasNoSubnet", "Router's %s external network has no %s subnet", rt.ID, family)
}

func plural(which []string) string {
	if len(which) > 1 {
		return "s"
	}
	return ""
}

// localGroupVersion checks a local endpoint group (subnets on the
// service's router, of one IP version) and returns the version.
func (s *Service) localGroupVersion(tx *nsdb.Tx, c *identity.Context, v *VPNService, id string) (int, error) {
	g, err := get[*EndpointGroup](tx, c, id)
	if err != nil {
		return 0, err
	}
	if g.Type != "subnet" {
		return 0, NewError(BadRequest, "WrongEndpointGroupType", "Endpoint group %s type is '%s' and should be 'subnet'", g.ID, g.Type)
	}
	ports, err := listOf[*Port](tx, "router_id", v.RouterID)
	if err != nil {
		return 0, err
	}
	ver := 0
	for _, ep := range g.Endpoints {
		sub, err := get[*Subnet](tx, c, strings.ToLower(ep))
		if err != nil {
			return 0, err
		}
		on := false
		for _, p := range ports {
			for _, f := range p.FixedIPs {
				on = on || f.SubnetID == sub.ID
			}
		}
		if !on {
			return 0, NewError(BadRequest, "SubnetIsNotConnectedToRouter", "Subnet %s is not connected to Router %s", sub.ID, v.RouterID)
		}
		if ver != 0 && sub.IPVersion != ver {
			return 0, NewError(BadRequest, "MixedIPVersionsForIPSecEndpoints", "Endpoints in group %s do not have the same IP version, as required for IPSec site-to-site connection", g.ID)
		}
		ver = sub.IPVersion
	}
	return ver, nil
}

// PrepareSiteConnection checks a connection's create.
func (s *Service) PrepareSiteConnection(c *identity.Context, r SiteConnectionRequest) (*Creation, error) {
	st, err := s.creating(c, &r.StdRequest, "create_ipsec_site_connection")
	if err != nil {
		return nil, err
	}
	x := &SiteConnection{Std: st, VPNServiceID: r.VPNServiceID, IKEPolicyID: r.IKEPolicyID, IPsecPolicyID: r.IPsecPolicyID,
		MTU: 1500, Initiator: "bi-directional", DPDAction: "hold", DPDInterval: 30, DPDTimeout: 120, AdminStateUp: true}
	r.apply(x)
	return simpleCreate(st, x, func(tx *nsdb.Tx, y *SiteConnection) error { return s.checkConnection(tx, c, y) }), nil
}

// UpdateSiteConnection changes a connection, checked again whole.
func (s *Service) UpdateSiteConnection(ctx context.Context, c *identity.Context, id string, r SiteConnectionRequest, ifRev int64) (*SiteConnection, error) {
	return modify(ctx, s, c, id, "update_ipsec_site_connection", ifRev, func(tx *nsdb.Tx, x *SiteConnection) error {
		r.apply(x)
		if err := s.checkConnection(tx, c, x); err != nil {
			return err
		}
		s.touch(&x.Std)
		return tx.Put(x)
	})
}

// DeleteSiteConnection deletes a connection.
func (s *Service) DeleteSiteConnection(ctx context.Context, c *identity.Context, id string, ifRev int64) error {
	_, err := modify(ctx, s, c, id, "delete_ipsec_site_connection", ifRev, func(tx *nsdb.Tx, x *SiteConnection) error {
		return tx.Delete(SiteConnectionKind, id)
	})
	return err
}

// vpnRouterInUse refuses to take the gateway of a router VPN services are
// on (neutron-vpnaas's check_router_in_use, on the gateway's delete).
func vpnRouterInUse(tx *nsdb.Tx, routerID string) error {
	vs, err := tx.List(VPNServiceKind, "router_id", routerID)
	if err != nil || len(vs) == 0 {
		return err
	}
	ids := make([]string, len(vs))
	for i, o := range vs {
		ids[i] = o.(*VPNService).ID
	}
	suffix := ""
	if len(ids) > 1 {
		suffix = "s"
	}
	return inUse("RouterInUse", "Router %s is currently used by VPN service%s (%s)", routerID, suffix, strings.Join(ids, ","))
}

// vpnSubnetInUse refuses to disconnect a router from a subnet a service
// or a connection's local endpoint group on the router uses.
func vpnSubnetInUse(tx *nsdb.Tx, subnetID, routerID string) error {
	vs, err := listOf[*VPNService](tx, "router_id", routerID)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if v.SubnetID == subnetID {
			return inUse("SubnetInUseByVPNService", "Subnet %s is used by VPNService %s", subnetID, v.ID)
		}
	}
	for _, v := range vs {
		conns, err := listOf[*SiteConnection](tx, "vpnservice_id", v.ID)
		if err != nil {
			return err
		}
		for _, x := range conns {
			if x.LocalGroupID == "" {
				continue
			}
			if o, err := tx.Get(EndpointGroupKind, x.LocalGroupID); err == nil && slices.Contains(o.(*EndpointGroup).Endpoints, subnetID) {
				return inUse("SubnetInUseByIPsecSiteConnection", "Subnet %s is used by ipsec site connection %s", subnetID, x.ID)
			}
		}
	}
	return nil
}

// vpnSubnetInGroup refuses to delete a subnet an endpoint group names.
func vpnSubnetInGroup(tx *nsdb.Tx, subnetID string) error {
	gs, err := listOf[*EndpointGroup](tx, "type", "subnet")
	if err != nil {
		return err
	}
	for _, g := range gs {
		if slices.Contains(g.Endpoints, subnetID) {
			return inUse("SubnetInUseByEndpointGroup", "Subnet %s is used by endpoint group %s", subnetID, g.ID)
		}
	}
	return nil
}
