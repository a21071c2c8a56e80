package neutron_test

import (
	"fmt"
	"strings"
	"testing"
)

// TestValidation sends the bad input Neutron itself refuses and checks the
// status, the NeutronError type and the message, and that the refused
// request wrote nothing at all (the NSDB's revision does not move).
func TestValidation(t *testing.T) {
	e := newEnv(t)
	c := e.admin
	mk := func(path, body, key string) string {
		t.Helper()
		st, doc := e.raw(c, "POST", path, body)
		if st != 201 {
			t.Fatalf("setup POST %s %s: %d %v", path, body, st, doc)
		}
		return doc[key].(map[string]any)["id"].(string)
	}
	net := mk("/v2.0/networks", `{"network": {"name": "n"}}`, "network")
	net2 := mk("/v2.0/networks", `{"network": {"name": "n2"}}`, "network")
	ext := mk("/v2.0/networks", `{"network": {"name": "ext", "router:external": true}}`, "network")
	mk("/v2.0/networks", `{"network": {"provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 100}}`, "network")
	mk("/v2.0/networks", `{"network": {"provider:network_type": "flat", "provider:physical_network": "physnet2"}}`, "network")
	sub := mk("/v2.0/subnets", `{"subnet": {"network_id": "`+net+`", "ip_version": 4, "cidr": "10.0.0.0/24"}}`, "subnet")
	sub2 := mk("/v2.0/subnets", `{"subnet": {"network_id": "`+net2+`", "ip_version": 4, "cidr": "10.0.0.0/25"}}`, "subnet")
	nogw := mk("/v2.0/subnets", `{"subnet": {"network_id": "`+net2+`", "ip_version": 4, "cidr": "10.8.0.0/24", "gateway_ip": null}}`, "subnet")
	tiny := mk("/v2.0/networks", `{"network": {"name": "tiny"}}`, "network")
	mk("/v2.0/subnets", `{"subnet": {"network_id": "`+tiny+`", "ip_version": 4, "cidr": "10.9.0.0/30", "enable_dhcp": false}}`, "subnet")
	mk("/v2.0/ports", `{"port": {"network_id": "`+tiny+`"}}`, "port")
	mk("/v2.0/subnets", `{"subnet": {"network_id": "`+ext+`", "ip_version": 4, "cidr": "203.0.113.0/24"}}`, "subnet")
	port := mk("/v2.0/ports", `{"port": {"network_id": "`+net+`", "fixed_ips": [{"ip_address": "10.0.0.9"}], "mac_address": "fa:16:3e:00:00:09"}}`, "port")
	lone := mk("/v2.0/ports", `{"port": {"network_id": "`+net2+`", "fixed_ips": [{"subnet_id": "`+sub2+`"}]}}`, "port")
	used := mk("/v2.0/ports", `{"port": {"network_id": "`+net2+`", "device_id": "instance-9", "device_owner": "compute:nova"}}`, "port")
	router := mk("/v2.0/routers", `{"router": {"name": "r", "external_gateway_info": {"network_id": "`+ext+`"}}}`, "router")
	if st, _ := e.raw(c, "PUT", "/v2.0/routers/"+router+"/add_router_interface", `{"subnet_id": "`+sub+`"}`); st != 200 {
		t.Fatal("setup: add interface")
	}
	fip := mk("/v2.0/floatingips", `{"floatingip": {"floating_network_id": "`+ext+`", "port_id": "`+port+`"}}`, "floatingip")
	fip2 := mk("/v2.0/floatingips", `{"floatingip": {"floating_network_id": "`+ext+`"}}`, "floatingip")
	server := mk("/v2.0/ports", `{"port": {"network_id": "`+net+`", "fixed_ips": [{"ip_address": "10.0.0.10"}]}}`, "port")
	mk("/v2.0/floatingips/"+fip2+"/port_forwardings", `{"port_forwarding": {"internal_port_id": "`+server+`", "internal_ip_address": "10.0.0.10", "internal_port": 22, "external_port": 2222, "protocol": "tcp"}}`, "port_forwarding")
	sg := mk("/v2.0/security-groups", `{"security_group": {"name": "sg"}}`, "security_group")
	mk("/v2.0/security-group-rules", `{"security_group_rule": {"security_group_id": "`+sg+`", "direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}}`, "security_group_rule")
	if st, _ := e.raw(c, "PUT", "/v2.0/ports/"+port, `{"port": {"security_groups": ["`+sg+`"]}}`); st != 200 {
		t.Fatal("setup: port groups")
	}
	missing := "0b5d2a5e-0000-4000-8000-000000000000"
	rule := func(extra string) string {
		return `{"security_group_rule": {"security_group_id": "` + sg + `", "direction": "ingress"` + extra + `}}`
	}

	cases := []struct {
		name, method, path, body string
		status                   int
		typ, msg                 string
	}{
		// Requests Neutron's API layer refuses.
		{"unknown attribute", "POST", "/v2.0/networks", `{"network": {"colour": "blue"}}`, 400, "HTTPBadRequest", "Unrecognized attribute(s) 'colour'"},
		{"id on create", "POST", "/v2.0/networks", `{"network": {"id": "` + missing + `"}}`, 400, "HTTPBadRequest", "Attribute 'id' not allowed in POST"},
		{"read-only attribute", "PUT", "/v2.0/networks/" + net, `{"network": {"status": "DOWN"}}`, 400, "HTTPBadRequest", "Cannot update read-only attribute status"},
		{"no resource key", "POST", "/v2.0/networks", `{"net": {}}`, 400, "HTTPBadRequest", "Unable to find 'network' in request body"},
		{"malformed JSON", "POST", "/v2.0/networks", `{"network": `, 400, "MalformedRequestBody", "Malformed request body"},
		{"name too long", "POST", "/v2.0/networks", `{"network": {"name": "` + strings.Repeat("x", 256) + `"}}`, 400, "HTTPBadRequest", "exceeds maximum length of 255"},
		{"not a boolean", "POST", "/v2.0/networks", `{"network": {"admin_state_up": "maybe"}}`, 400, "HTTPBadRequest", "'maybe' is not a valid boolean value"},
		{"required attribute", "POST", "/v2.0/subnets", `{"subnet": {"cidr": "10.1.0.0/24", "ip_version": 4}}`, 400, "HTTPBadRequest", "Required attribute 'network_id' not specified"},
		{"bad UUID", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "nope", "cidr": "10.1.0.0/24", "ip_version": 4}}`, 400, "HTTPBadRequest", "'nope' is not a valid UUID"},
		{"project mismatch", "POST", "/v2.0/networks", `{"network": {"tenant_id": "a", "project_id": "b"}}`, 400, "HTTPBadRequest", "'project_id' and 'tenant_id' do not match"},
		// Networks.
		{"vlan without physnet", "POST", "/v2.0/networks", `{"network": {"provider:network_type": "vlan", "provider:segmentation_id": 5}}`, 400, "InvalidInput", "physical_network required"},
		{"vlan out of range", "POST", "/v2.0/networks", `{"network": {"provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 5000}}`, 400, "InvalidInput", "out of range"},
		{"vlan in use", "POST", "/v2.0/networks", `{"network": {"provider:network_type": "vlan", "provider:physical_network": "physnet1", "provider:segmentation_id": 100}}`, 409, "VlanIdInUse", "The VLAN 100 on physical network physnet1 is in use"},
		{"flat in use", "POST", "/v2.0/networks", `{"network": {"provider:network_type": "flat", "provider:physical_network": "physnet2"}}`, 409, "FlatNetworkInUse", "Physical network physnet2 is in use"},
		{"unknown network type", "POST", "/v2.0/networks", `{"network": {"provider:network_type": "local"}}`, 400, "InvalidInput", "network_type value 'local' not supported"},
		{"MTU too big", "POST", "/v2.0/networks", `{"network": {"mtu": 9000}}`, 400, "InvalidInput", "Requested MTU is too big, maximum is 1450"},
		{"provider update", "PUT", "/v2.0/networks/" + net, `{"network": {"provider:segmentation_id": 7}}`, 400, "InvalidInput", "does not support updating provider attributes"},
		{"network in use", "DELETE", "/v2.0/networks/" + net, ``, 409, "NetworkInUse", "There are one or more ports still in use on the network"},
		{"network not found", "GET", "/v2.0/networks/" + missing, ``, 404, "NetworkNotFound", "Network " + missing + " could not be found."},
		// Subnets.
		{"overlapping subnets", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.0.0.128/25"}}`, 400, "InvalidInput", "overlaps with another subnet"},
		{"host bits in cidr", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.1/24"}}`, 400, "HTTPBadRequest", "'10.1.0.0/24' is recommended"},
		{"cidr and version", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 6, "cidr": "10.1.0.0/24"}}`, 400, "InvalidInput", "does not match the ip_version '6'"},
		{"gateway is the network address", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.0"}}`, 400, "InvalidInput", "Gateway is not valid on subnet"},
		{"gateway in a pool", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.0/24", "gateway_ip": "10.1.0.20", "allocation_pools": [{"start": "10.1.0.10", "end": "10.1.0.30"}]}}`, 409, "GatewayConflictWithAllocationPools", "Gateway ip 10.1.0.20 conflicts with allocation pool"},
		{"pool beyond the cidr", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.0/24", "allocation_pools": [{"start": "10.1.0.10", "end": "10.1.1.30"}]}}`, 400, "OutOfBoundsAllocationPool", "spans beyond the subnet cidr 10.1.0.0/24"},
		{"pool backwards", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.0/24", "allocation_pools": [{"start": "10.1.0.30", "end": "10.1.0.10"}]}}`, 400, "InvalidAllocationPool", "is not valid"},
		{"overlapping pools", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.0/24", "allocation_pools": [{"start": "10.1.0.10", "end": "10.1.0.30"}, {"start": "10.1.0.20", "end": "10.1.0.40"}]}}`, 409, "OverlappingAllocationPools", "Found overlapping allocation pools"},
		{"DHCP on a /31", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.0/31"}}`, 400, "InvalidInput", "incompatible with DHCP service enabled"},
		{"too many nameservers", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.0/24", "dns_nameservers": ["1.1.1.1", "1.1.1.2", "1.1.1.3", "1.1.1.4", "1.1.1.5", "1.1.1.6"]}}`, 400, "DNSNameServersExhausted", "exceeds the limit 5"},
		{"duplicate nameserver", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.0/24", "dns_nameservers": ["1.1.1.1", "1.1.1.1"]}}`, 400, "HTTPBadRequest", "Duplicate nameserver '1.1.1.1'"},
		{"bad host route", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.0/24", "host_routes": [{"destination": "10.2.0.0/16"}]}}`, 400, "HTTPBadRequest", "Invalid data format for hostroute"},
		{"IPv6 mode on IPv4", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + net + `", "ip_version": 4, "cidr": "10.1.0.0/24", "ipv6_ra_mode": "slaac"}}`, 400, "InvalidInput", "ipv6_ra_mode is not valid when ip_version is 4"},
		{"subnet on a missing network", "POST", "/v2.0/subnets", `{"subnet": {"network_id": "` + missing + `", "ip_version": 4, "cidr": "10.1.0.0/24"}}`, 404, "NetworkNotFound", ""},
		{"subnet in use", "DELETE", "/v2.0/subnets/" + sub, ``, 409, "SubnetInUse", "One or more ports have an IP allocation from this subnet"},
		// Ports.
		{"IP outside the subnet", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "fixed_ips": [{"subnet_id": "` + sub + `", "ip_address": "10.7.0.5"}]}}`, 400, "InvalidIpForSubnet", "IP address 10.7.0.5 is not a valid IP for the specified subnet."},
		{"network address as IP", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "fixed_ips": [{"subnet_id": "` + sub + `", "ip_address": "10.0.0.0"}]}}`, 400, "InvalidIpForSubnet", ""},
		{"IP on no subnet", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "fixed_ips": [{"ip_address": "10.7.0.5"}]}}`, 400, "InvalidIpForNetwork", "is not a valid IP for any of the subnets"},
		{"IP in use", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "fixed_ips": [{"ip_address": "10.0.0.9"}]}}`, 409, "IpAddressInUse", "The IP address 10.0.0.9 is in use."},
		{"MAC in use", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "mac_address": "fa:16:3e:00:00:09"}}`, 409, "MacAddressInUse", "The mac address fa:16:3e:00:00:09 is in use."},
		{"bad MAC", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "mac_address": "fa:16:3e:00:00"}}`, 400, "HTTPBadRequest", "is not a valid MAC address"},
		{"subnet of another network", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "fixed_ips": [{"subnet_id": "` + sub2 + `"}]}}`, 400, "InvalidInput", "fixed_ips included invalid subnet"},
		{"missing security group", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "security_groups": ["` + missing + `"]}}`, 404, "SecurityGroupNotFound", ""},
		{"groups without port security", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "port_security_enabled": false, "security_groups": ["` + sg + `"]}}`, 400, "PortSecurityAndIPRequiredForSecurityGroups", ""},
		{"pairs without port security", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "port_security_enabled": false, "security_groups": [], "allowed_address_pairs": [{"ip_address": "10.0.0.77"}]}}`, 409, "AddressPairAndPortSecurityRequired", ""},
		{"disable security with groups", "PUT", "/v2.0/ports/" + port, `{"port": {"port_security_enabled": false}}`, 409, "PortSecurityPortHasSecurityGroup", ""},
		{"duplicate address pair", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "allowed_address_pairs": [{"ip_address": "10.0.0.77"}, {"ip_address": "10.0.0.77"}]}}`, 400, "DuplicateAddressPairInRequest", ""},
		{"unknown VNIC type", "POST", "/v2.0/ports", `{"port": {"network_id": "` + net + `", "binding:vnic_type": "warp"}}`, 400, "HTTPBadRequest", "'warp' is not in"},
		{"addresses exhausted", "POST", "/v2.0/ports", `{"port": {"network_id": "` + tiny + `"}}`, 409, "IpAddressGenerationFailure", "No more IP addresses available on network " + tiny},
		// Routers.
		{"gateway on an internal network", "PUT", "/v2.0/routers/" + router, `{"router": {"external_gateway_info": {"network_id": "` + net + `"}}}`, 400, "BadRequest", "is not an external network"},
		{"interface twice", "PUT", "/v2.0/routers/" + router + "/add_router_interface", `{"subnet_id": "` + sub + `"}`, 400, "BadRequest", "Router already has a port on subnet " + sub},
		{"overlapping interfaces", "PUT", "/v2.0/routers/" + router + "/add_router_interface", `{"subnet_id": "` + sub2 + `"}`, 400, "BadRequest", "overlaps with cidr 10.0.0.0/24"},
		{"interface without gateway", "PUT", "/v2.0/routers/" + router + "/add_router_interface", `{"subnet_id": "` + nogw + `"}`, 400, "BadRequest", "Subnet for router interface must have a gateway IP"},
		{"interface with both", "PUT", "/v2.0/routers/" + router + "/add_router_interface", `{"subnet_id": "` + sub + `", "port_id": "` + port + `"}`, 400, "BadRequest", "Cannot specify both subnet-id and port-id"},
		{"interface with neither", "PUT", "/v2.0/routers/" + router + "/add_router_interface", `{}`, 400, "BadRequest", "Either subnet_id or port_id must be specified"},
		{"interface through a used port", "PUT", "/v2.0/routers/" + router + "/add_router_interface", `{"port_id": "` + used + `"}`, 409, "PortInUse", "Port already has an attached device instance-9"},
		{"interface through a port on an attached subnet", "PUT", "/v2.0/routers/" + router + "/add_router_interface", `{"port_id": "` + port + `"}`, 400, "BadRequest", "Router already has a port on subnet"},
		{"remove a missing interface", "PUT", "/v2.0/routers/" + router + "/remove_router_interface", `{"subnet_id": "` + sub2 + `"}`, 404, "RouterInterfaceNotFoundForSubnet", "has no interface on subnet " + sub2},
		{"remove an interface in use", "PUT", "/v2.0/routers/" + router + "/remove_router_interface", `{"subnet_id": "` + sub + `"}`, 409, "RouterInterfaceInUseByFloatingIP", ""},
		{"route not connected", "PUT", "/v2.0/routers/" + router, `{"router": {"routes": [{"destination": "172.16.0.0/16", "nexthop": "192.0.2.1"}]}}`, 400, "InvalidRoutes", "the nexthop is not connected with router"},
		{"router in use", "DELETE", "/v2.0/routers/" + router, ``, 409, "RouterInUse", "still has ports"},
		{"gateway used by floating IPs", "PUT", "/v2.0/routers/" + router, `{"router": {"external_gateway_info": {}}}`, 409, "RouterExternalGatewayInUseByFloatingIp", ""},
		{"router not found", "GET", "/v2.0/routers/" + missing, ``, 404, "RouterNotFound", ""},
		// Floating IPs.
		{"floating IP on an internal network", "POST", "/v2.0/floatingips", `{"floatingip": {"floating_network_id": "` + net + `"}}`, 400, "BadRequest", "is not a valid external network"},
		{"unreachable port", "POST", "/v2.0/floatingips", `{"floatingip": {"floating_network_id": "` + ext + `", "port_id": "` + lone + `"}}`, 404, "ExternalGatewayForFloatingIPNotFound", "is not reachable from subnet"},
		{"fixed IP with a floating IP", "PUT", "/v2.0/floatingips/" + fip2, `{"floatingip": {"port_id": "` + port + `"}}`, 409, "FipInUseByPortForwarding", ""},
		{"second floating IP on a fixed IP", "POST", "/v2.0/floatingips", `{"floatingip": {"floating_network_id": "` + ext + `", "port_id": "` + port + `"}}`, 409, "FloatingIPPortAlreadyAssociated", ""},
		{"duplicate port forwarding", "POST", "/v2.0/floatingips/" + fip2 + "/port_forwardings", `{"port_forwarding": {"internal_port_id": "` + server + `", "internal_ip_address": "10.0.0.10", "internal_port": 80, "external_port": 2222, "protocol": "tcp"}}`, 400, "BadRequest", "There is a port collision with the external_port_range. The following ranges collide: 2222:2222 and 2222:2222"},
		{"forwarding to a port with a floating IP", "POST", "/v2.0/floatingips/" + fip2 + "/port_forwardings", `{"port_forwarding": {"internal_port_id": "` + port + `", "internal_ip_address": "10.0.0.9", "internal_port": 80, "external_port": 80, "protocol": "tcp"}}`, 409, "PortHasBindingFloatingIP", "already has a binding floating IP"},
		{"forwarding to a floating IP's port", "POST", "/v2.0/floatingips/" + fip + "/port_forwardings", `{"port_forwarding": {"internal_port_id": "` + port + `", "internal_ip_address": "10.0.0.9", "internal_port": 80, "external_port": 80, "protocol": "tcp"}}`, 409, "FipInUseByPortForwarding", ""},
		// Security groups.
		{"second default group", "POST", "/v2.0/security-groups", `{"security_group": {"name": "default"}}`, 409, "SecurityGroupDefaultAlreadyExists", "Default security group already exists."},
		{"group in use", "DELETE", "/v2.0/security-groups/" + sg, ``, 409, "SecurityGroupInUse", ""},
		{"bad direction", "POST", "/v2.0/security-group-rules", `{"security_group_rule": {"security_group_id": "` + sg + `", "direction": "sideways"}}`, 400, "HTTPBadRequest", "'sideways' is not in ['ingress', 'egress']"},
		{"ports without protocol", "POST", "/v2.0/security-group-rules", rule(`, "port_range_min": 80, "port_range_max": 80`), 400, "SecurityGroupProtocolRequiredWithPorts", "Must also specify protocol if port range is given."},
		{"backwards port range", "POST", "/v2.0/security-group-rules", rule(`, "protocol": "tcp", "port_range_min": 90, "port_range_max": 80`), 400, "SecurityGroupInvalidPortRange", "port_range_min must be <= port_range_max"},
		{"port 0", "POST", "/v2.0/security-group-rules", rule(`, "protocol": "udp", "port_range_min": 0, "port_range_max": 80`), 400, "SecurityGroupInvalidPortValue", "Invalid value for port 0"},
		{"ICMP type too big", "POST", "/v2.0/security-group-rules", rule(`, "protocol": "icmp", "port_range_min": 300`), 400, "SecurityGroupInvalidIcmpValue", "It must be 0 to 255."},
		{"both remotes", "POST", "/v2.0/security-group-rules", rule(`, "remote_ip_prefix": "10.0.0.0/8", "remote_group_id": "` + sg + `"`), 400, "SecurityGroupMultipleRemoteEntites", "Only one of remote_ip_prefix or remote_group_id or remote_address_group_id may be provided."},
		{"ethertype and prefix", "POST", "/v2.0/security-group-rules", rule(`, "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"`), 400, "SecurityGroupRuleParameterConflict", "Conflicting value ethertype IPv6 for CIDR 10.0.0.0/8"},
		{"unknown protocol", "POST", "/v2.0/security-group-rules", rule(`, "protocol": "telepathy"`), 400, "SecurityGroupRuleInvalidProtocol", "not supported"},
		{"duplicate rule", "POST", "/v2.0/security-group-rules", rule(`, "protocol": "6", "port_range_min": 22, "port_range_max": 22`), 409, "SecurityGroupRuleExists", "Security group rule already exists."},
		{"rule of a missing group", "POST", "/v2.0/security-group-rules", `{"security_group_rule": {"security_group_id": "` + missing + `", "direction": "ingress"}}`, 404, "SecurityGroupNotFound", ""},
	}
	for _, tc := range cases {
		before := e.rev()
		st, doc := e.raw(c, tc.method, tc.path, tc.body)
		ne, _ := doc["NeutronError"].(map[string]any)
		if st != tc.status || ne["type"] != tc.typ || !strings.Contains(fmt.Sprint(ne["message"], " ", ne["detail"]), tc.msg) {
			t.Errorf("%s: got %d %v, want %d %s %q", tc.name, st, doc, tc.status, tc.typ, tc.msg)
		}
		if after := e.rev(); after != before {
			t.Errorf("%s: the refused request wrote (revision %d -> %d)", tc.name, before, after)
		}
	}

	// Router-owned ports are not deleted through the port API.
	st, doc := e.raw(c, "GET", "/v2.0/ports?device_owner=network:router_interface", "")
	itf := doc["ports"].([]any)[0].(map[string]any)["id"].(string)
	before := e.rev()
	if st, doc = e.raw(c, "DELETE", "/v2.0/ports/"+itf, ""); st != 409 || doc["NeutronError"].(map[string]any)["type"] != "ServicePortInUse" {
		t.Errorf("delete a router interface port: %d %v", st, doc)
	}
	if e.rev() != before {
		t.Error("refused port delete wrote")
	}

	// Quotas: over the limit is 409 OverQuota.
	if st, _ := e.raw(c, "PUT", "/v2.0/quotas/admin-quota-test", `{"quota": {"network": 0}}`); st != 200 {
		t.Fatalf("set quota: %d", st)
	}
	st, doc = e.raw(c, "POST", "/v2.0/networks", `{"network": {"tenant_id": "admin-quota-test"}}`)
	if st != 409 || doc["NeutronError"].(map[string]any)["type"] != "OverQuota" || !strings.Contains(fmt.Sprint(doc), "Quota exceeded for resources: ['network']") {
		t.Errorf("over quota: %d %v", st, doc)
	}
	// A limit lowered after creates that found none (and remembered it)
	// applies to the next create at once.
	if st, _ := e.raw(c, "PUT", "/v2.0/quotas/admin-quota-test", `{"quota": {"network": -1}}`); st != 200 {
		t.Fatalf("set quota: %d", st)
	}
	for i := range 2 {
		if st, doc = e.raw(c, "POST", "/v2.0/networks", `{"network": {"tenant_id": "admin-quota-test"}}`); st != 201 {
			t.Fatalf("create %d without a limit: %d %v", i, st, doc)
		}
	}
	if st, _ := e.raw(c, "PUT", "/v2.0/quotas/admin-quota-test", `{"quota": {"network": 2}}`); st != 200 {
		t.Fatalf("set quota: %d", st)
	}
	if st, doc = e.raw(c, "POST", "/v2.0/networks", `{"network": {"tenant_id": "admin-quota-test"}}`); st != 409 {
		t.Errorf("a create over a limit just set: %d %v", st, doc)
	}
}
