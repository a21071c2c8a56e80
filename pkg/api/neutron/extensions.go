package neutron

import (
	"net/http"
	"slices"

	"github.com/nagare/nagare/pkg/neutron"
)

// extension is one entry of GET /v2.0/extensions.
type extension struct {
	Alias       string   `json:"alias"`
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Updated     string   `json:"updated"`
	Links       []string `json:"links"`
}

// extensionList is exactly what is implemented; clients (openstacksdk,
// Nova) decide what to send from it.
var extensionList = []extension{
	{"address-group", "Address group", "Support address group", "2020-07-15T10:00:00-00:00", nil},
	{"address-scope", "Address scope", "Address scopes extension.", "2015-07-26T10:00:00-00:00", nil},
	{"agent", "None", "The agent management extension.", "2013-02-03T10:00:00-00:00", nil},
	{"allowed-address-pairs", "Allowed Address Pairs", "Provides allowed address pairs", "2013-07-23T10:00:00-00:00", nil},
	{"bgp", "Neutron BGP Dynamic Routing Extension", "Discover and advertise routes for Neutron prefixes dynamically via BGP", "2016-05-10T15:37:00-00:00", nil},
	{"bgp_4byte_asn", "BGP 4-byte AS numbers", "Support bgp 4-byte AS number", "2017-09-07T00:00:00-00:00", nil},
	{"bgp_dragent_scheduler", "BGP Dynamic Routing Agent Scheduler", "Schedules BgpSpeakers on BgpDrAgent", "2015-07-30T10:00:00-00:00", nil},
	{"bgpvpn", "BGPVPN Extension", "Provides support for BGP VPN interconnections", "2014-06-10T17:00:00-00:00", nil},
	{"bgpvpn-routes-control", "BGPVPN Routes Control Extension", "Provides support for controlling routes advertised to a BGPVPN", "2017-05-20T00:00:00-00:00", nil},
	{"bgpvpn-vni", "BGPVPN VXLAN VNI extension", "BGPVPN VXLAN VNI extension", "2017-09-12T10:00:00-00:00", nil},
	{"binding", "Port Binding", "Expose port bindings of a virtual port to external application", "2014-02-03T10:00:00-00:00", nil},
	{"default-subnetpools", "Default Subnetpools", "Provides ability to mark and use a subnetpool as the default.", "2016-02-18T18:00:00-00:00", nil},
	{"dns-integration", "DNS Integration", "Provides integration with DNS.", "2015-08-15T18:00:00-00:00", nil},
	{"ext-gw-mode", "Neutron L3 Configurable external gateway mode", "Extension of the router abstraction for specifying whether SNAT should occur on the external gateway", "2013-03-28T10:00:00-00:00", nil},
	{"external-gateway-multihoming", "Neutron L3 External Gateway Multihoming", "Allow multiple external gateway ports per router", "2023-01-18T00:00:00-00:00", nil},
	{"external-net", "Neutron external network", "Adds external network attribute to network resource.", "2013-01-14T10:00:00-00:00", nil},
	{"extra_dhcp_opt", "Neutron Extra DHCP options", "Extra options configuration for DHCP. For example PXE boot options to DHCP clients can be specified (e.g. tftp-server, server-ip-address, bootfile-name)", "2013-03-17T12:00:00-00:00", nil},
	{"extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router", "2013-02-01T10:00:00-00:00", nil},
	{"extraroute-atomic", "Atomically add/remove extra routes", "Edit extra routes of a router on server side by atomically adding/removing extra routes", "2019-07-10T00:00:00+00:00", nil},
	{"filter-validation", "Filter parameters validation", "Provides validation on filter parameters.", "2018-03-21T10:00:00-00:00", nil},
	{"fip-port-details", "Floating IP Port Details Extension", "Add port_details attribute to Floating IP resource", "2018-04-09T10:00:00-00:00", nil},
	{"floating-ip-port-forwarding", "Floating IP Port Forwarding", "Provide port forwarding to floating IP", "2018-04-11T10:00:00-00:00", nil},
	{"floating-ip-port-forwarding-port-ranges", "Floating IP Port Forwarding support port ranges", "Add support to port ranges", "2020-07-01T10:00:00-00:00", nil},
	{"fwaas_v2", "FWaaS v2", "Provides support for firewall-as-a-service version 2", "2016-10-06T10:00:00-00:00", nil},
	{"net-mtu", "Network MTU", "Provides MTU attribute for a network resource.", "2015-03-25T10:00:00-00:00", nil},
	{"net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a network resource.", "2017-07-12T00:00:00-00:00", nil},
	{"network-ip-availability", "Network IP Availability", "Provides IP availability data for each network and subnet.", "2015-09-24T00:00:00-00:00", nil},
	{"pagination", "Pagination support", "Extension that indicates that pagination is enabled.", "2016-06-12T00:00:00-00:00", nil},
	{"port-security", "Port Security", "Provides port security", "2012-07-23T10:00:00-00:00", nil},
	{"port-trusted-vif", "Port trusted vif", "Expose port 'trusted' attribute in the API", "2024-07-10T10:00:00-00:00", nil},
	{"project-id", "project_id field enabled", "Extension that indicates that project_id field is enabled.", "2016-09-09T09:09:09-09:09", nil},
	{"provider", "Provider Network", "Expose mapping of virtual networks to physical networks", "2012-09-07T10:00:00-00:00", nil},
	{"qos", "Quality of Service", "The Quality of Service extension.", "2015-06-08T10:00:00-00:00", nil},
	{"qos-bw-limit-direction", "Direction for QoS bandwidth limit rule", "Allow to configure QoS bandwidth limit rule with specific direction: ingress or egress", "2017-04-10T10:00:00-00:00", nil},
	{"qos-default", "QoS default policy", "Expose the QoS default policy per project", "2017-041-06T10:00:00-00:00", nil},
	{"qos-port-network-policy", "QoS port network policy ID", "Adds a the QoS network ID to the port definition", "2019-11-01T10:00:00-00:00", nil},
	{"qos-rule-type-details", "Details of QoS rule types", "Expose details about QoS rule types supported by loaded backend drivers", "2017-06-22T10:00:00-00:00", nil},
	{"quota_details", "Quota details management support", "Expose functions for quotas usage statistics per project", "2017-02-10T10:00:00-00:00", nil},
	{"quotas", "Quota management support", "Expose functions for quotas management per project", "2012-07-29T10:00:00-00:00", nil},
	{"rbac-address-group", "Add address_group type to RBAC", "Add address_group type to network RBAC", "2021-01-20T00:00:00-00:00", nil},
	{"rbac-address-scope", "Add address_scope type to RBAC", "Add address_scope type to RBAC", "2020-02-12T00:00:00-00:00", nil},
	{"rbac-policies", "RBAC Policies", "Allows creation and modification of policies that control tenant access to resources.", "2015-06-17T12:15:12-00:00", nil},
	{"rbac-security-groups", "Add security_group type to network RBAC", "Add security_group type to network RBAC", "2019-02-14T00:00:00-00:00", nil},
	{"rbac-subnetpool", "Add subnetpool type to RBAC", "Add subnetpool type to RBAC", "2020-02-05T00:00:00-00:00", nil},
	{"revision-if-match", "If-Match constraints based on revision_number", "Extension indicating that If-Match based on revision_number is supported.", "2016-12-11T00:00:00-00:00", nil},
	{"router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 Neutron networks and access to external networks via a NAT gateway.", "2012-07-20T10:00:00-00:00", nil},
	{"security-group", "security-group", "The security groups extension.", "2012-10-05T10:00:00-00:00", nil},
	{"security-groups-normalized-cidr", "Security Group Rule Normalized CIDR", "Add new field with normalized remote_ip_prefix cidr in SG rule", "2019-11-13T10:00:00-00:00", nil},
	{"security-groups-remote-address-group", "Remote address group id field for security group rules", "Add new field of remote address group id in SG rules", "2020-08-25T10:00:00-00:00", nil},
	{"security-groups-shared-filtering", "Security group filtering on the shared field", "Support filtering security groups on the shared field", "2021-10-05T09:00:00-00:00", nil},
	{"segment", "Segment", "Segments extension.", "2016-02-24T17:00:00-00:00", nil},
	{"sorting", "Sorting support", "Extension that indicates that sorting is enabled.", "2016-06-12T00:00:00-00:00", nil},
	{"standard-attr-description", "standard-attr-description", "Extension to add descriptions to standard attributes", "2016-02-10T10:00:00-00:00", nil},
	{"standard-attr-revisions", "Resource revision numbers", "This extension will display the revision number of neutron resources.", "2016-04-11T10:00:00-00:00", nil},
	{"standard-attr-segment", "Standard Attribute Segment Extension", "Add standard attributes to Segment resource", "2018-04-09T10:00:00-00:00", nil},
	{"standard-attr-tag", "Tag support for resources with standard attribute: subnet, trunk, network_segment_range, router, network, policy, subnetpool, port, security_group, floatingip", "Enables to set tag on resources with standard attribute.", "2017-01-01T00:00:00-00:00", nil},
	{"standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at fields to all Neutron resources that have Neutron standard attributes.", "2016-09-12T10:00:00-00:00", nil},
	{"stateful-security-group", "Stateful security group", "Indicates if the security group is stateful or not", "2019-11-26T09:00:00-00:00", nil},
	{"subnet-service-types", "Subnet service types", "Provides ability to set the subnet service_types field", "2016-03-15T18:00:00-00:00", nil},
	{"subnet_allocation", "Subnet Allocation", "Enables allocation of subnets from a subnet pool", "2015-03-30T10:00:00-00:00", nil},
	{"subnetpool-prefix-ops", "Subnet Pool Prefix Operations", "Provides support for adjusting the prefix list of subnet pools", "2019-02-08T10:00:00-00:00", nil},
	{"taas", "Neutron Tap as a Service", "Neutron Tap as a Service Extension.", "2015-01-14T10:00:00-00:00", nil},
	{"taas-vlan-filter", "VLAN filtering for Neutron Tap as a Service", "Neutron Tap as a Service Extension for filtering VLANs.", "2018-01-14T10:00:00-00:00", nil},
	{"tag-creation", "Tag support on creation", "Enables to set tags on resources with standard attribute on creation.", "2019-06-12T00:00:00-00:00", nil},
	{"tap-mirror", "Tap as a Service GRE or ERSPAN mirror", "Neutron Tap as a Service extension for GRE or ERSPAN mirroring.", "2023-05-05T11:45:00-00:00", nil},
	{"tap-mirror-both-direction", "Tap as a Service mirror with BOTH direction support", "Neutron Tap as a Service extension mirroring with support for BOTH direction.", "2025-12-15T11:45:00-00:00", nil},
	{"trunk", "Trunk Extension", "Provides support for trunk ports", "2016-01-01T10:00:00-00:00", nil},
	{"trunk-details", "Trunk port details", "Expose trunk port details", "2016-01-01T10:00:00-00:00", nil},
	{"vlan-transparent", "Vlantransparent", "Provides Vlan Transparent Networks", "2015-03-23T09:00:00-00:00", nil},
	{"vpn-endpoint-groups", "VPN Endpoint Groups", "VPN endpoint groups support", "2015-08-04T10:00:00-00:00", nil},
	{"vpnaas", "VPN service", "Extension for VPN service", "2013-05-29T10:00:00-00:00", nil},
}

func (a *API) extensions(w http.ResponseWriter, r *http.Request) {
	out := make([]extension, len(extensionList))
	for i, e := range extensionList {
		e.Links = []string{}
		out[i] = e
	}
	writeJSON(w, http.StatusOK, map[string]any{"extensions": out})
}

func (a *API) extension(w http.ResponseWriter, r *http.Request) {
	alias := r.PathValue("alias")
	i := slices.IndexFunc(extensionList, func(e extension) bool { return e.Alias == alias })
	if i < 0 {
		writeError(w, http.StatusNotFound, neutron.NewError(neutron.NotFound, "ExtensionNotFound", "Extension with alias %s does not exist", alias))
		return
	}
	e := extensionList[i]
	e.Links = []string{}
	writeJSON(w, http.StatusOK, map[string]any{"extension": e})
}
