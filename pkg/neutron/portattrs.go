package neutron

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/nagare/nagare/pkg/model"
)

// Port and network attributes of extensions: extra_dhcp_opt (options the
// agent's DHCP hands the port), dns-integration (dns_name, dns_domain,
// dns_assignment) and port-trusted-vif.

// ExtraDHCPOpt is one of a port's extra_dhcp_opts.
type ExtraDHCPOpt struct {
	Name      string `json:"opt_name"`
	Value     string `json:"opt_value"`
	IPVersion int    `json:"ip_version"`
}

// ExtraDHCPOptRequest is a requested option: a nil Value removes the
// option on an update (and is not saved on a create).
type ExtraDHCPOptRequest struct {
	Name      string
	Value     *string
	IPVersion int // 4 or 6
}

// blankDHCPOpts may be given an empty value (Neutron's
// VALID_BLANK_EXTRA_DHCP_OPTS: an empty router or route list).
var blankDHCPOpts = []string{"router", "classless-static-route"}

// validOptValue is Neutron's _is_valid_opt_value: what is saved.
func validOptValue(name string, v *string) bool {
	if slices.Contains(blankDHCPOpts, name) {
		return v != nil
	}
	return v != nil && *v != ""
}

// mergeDHCPOpts applies requested options to a port's, as Neutron's
// _update_extra_dhcp_opts_on_port does: an option of the same name and IP
// version is replaced, or removed when the request's value is null; a new
// one is added.
func mergeDHCPOpts(have []ExtraDHCPOpt, req []ExtraDHCPOptRequest) []ExtraDHCPOpt {
	out := slices.Clone(have)
	for _, r := range req {
		i := slices.IndexFunc(out, func(o ExtraDHCPOpt) bool { return o.Name == r.Name && o.IPVersion == r.IPVersion })
		switch {
		case i >= 0 && r.Value == nil:
			out = slices.Delete(out, i, i+1)
		case i >= 0 && validOptValue(r.Name, r.Value):
			out[i].Value = *r.Value
		case i < 0 && validOptValue(r.Name, r.Value):
			out = append(out, ExtraDHCPOpt{Name: r.Name, Value: *r.Value, IPVersion: r.IPVersion})
		}
	}
	return out
}

// dhcpOptionCodes are the IPv4 option names Neutron takes (dnsmasq's, as
// ML2/OVN maps them) and their codes; an option may also be named by its
// number.
var dhcpOptionCodes = map[string]uint8{
	"netmask": 1, "router": 3, "dns-server": 6, "log-server": 7, "lpr-server": 9, "domain-name": 15,
	"swap-server": 16, "ip-forward-enable": 19, "default-ttl": 23, "mtu": 26, "router-discovery": 31,
	"arp-timeout": 35, "ethernet-encap": 36, "tcp-ttl": 37, "tcp-keepalive": 38, "nis-server": 41,
	"ntp-server": 42, "tftp-server": 66, "bootfile-name": 67, "tftp-server-address": 150,
	"path-prefix": 210, "wpad": 252,
}

// DHCPOptions are the options of a port the agent's DHCP serves: IPv4
// options Nagare's DHCP carries per host, with values their code can
// carry. Like ML2/OVN, Neutron keeps the others on the port and the DHCP
// server ignores them.
func DHCPOptions(opts []ExtraDHCPOpt) []model.DHCPOption {
	var out []model.DHCPOption
	for _, o := range opts {
		if o.IPVersion != 4 {
			continue
		}
		code, ok := dhcpOptionCodes[o.Name]
		if !ok {
			n, err := strconv.ParseUint(o.Name, 10, 8)
			if err != nil {
				continue
			}
			code = uint8(n)
		}
		d := model.DHCPOption{Code: code, Value: o.Value}
		if _, err := d.Encode(); err != nil || slices.ContainsFunc(out, func(x model.DHCPOption) bool { return x.Code == code }) {
			continue
		}
		out = append(out, d)
	}
	return out
}

// DNS names (neutron_lib.api.validators.dns).

// fqdnMax is the longest FQDN Neutron stores.
const fqdnMax = 255

var (
	dnsLabel   = regexp.MustCompile(`^([a-zA-Z0-9-]{1,63})$`)
	allNumeric = regexp.MustCompile(`^[0-9]+$`)
)

// dnsFormat is Neutron's _validate_dns_format: RFC 1123 labels, a
// trailing dot for a fully qualified name, no all-numeric top label.
func dnsFormat(data string) string {
	if data == "" {
		return ""
	}
	trimmed := strings.TrimSuffix(data, ".")
	reason := ""
	labels := strings.Split(trimmed, ".")
	switch {
	case len(trimmed) > fqdnMax:
		reason = fmt.Sprintf("'%s' exceeds the %d character FQDN limit", trimmed, fqdnMax)
	default:
	labels:
		for _, l := range labels {
			switch {
			case l == "":
				reason = "Encountered an empty component"
			case strings.HasPrefix(l, "-") || strings.HasSuffix(l, "-"):
				reason = fmt.Sprintf("Name '%s' must not start or end with a hyphen", l)
			case !dnsLabel.MatchString(l):
				reason = fmt.Sprintf("Name '%s' must be 1-63 characters long, each of which can only be alphanumeric or a hyphen", l)
			default:
				continue
			}
			break labels
		}
		if reason == "" && len(labels) > 1 && allNumeric.MatchString(labels[len(labels)-1]) {
			reason = fmt.Sprintf("TLD '%s' must not be all numeric", labels[len(labels)-1])
		}
	}
	if reason == "" {
		return ""
	}
	return fmt.Sprintf("'%s' not a valid PQDN or FQDN. Reason: %s", data, reason)
}

// ValidDNSName is validate_dns_name (a port's dns_name).
func ValidDNSName(s string) error {
	if msg := dnsFormat(s); msg != "" {
		return Invalid("dns_name", "%s", msg)
	}
	return nil
}

// ValidFIPDNSName is validate_fip_dns_name (a relative name).
func ValidFIPDNSName(s string) error {
	switch {
	case s == "":
		return nil
	case strings.HasSuffix(s, "."):
		return Invalid("dns_name", "'%s' is a FQDN. It should be a relative domain name", s)
	}
	if msg := dnsFormat(s); msg != "" {
		return Invalid("dns_name", "%s", msg)
	}
	if len(s) > fqdnMax-3 {
		return Invalid("dns_name", "'%s' contains %d characters. Adding a domain name will cause it to exceed the maximum length of a FQDN of '%d'", s, len(s), fqdnMax)
	}
	return nil
}

// ValidDNSDomain is validate_dns_domain (a network's or floating IP's
// dns_domain: fully qualified).
func ValidDNSDomain(s string) error {
	switch {
	case s == "":
		return nil
	case !strings.HasSuffix(s, "."):
		return Invalid("dns_domain", "'%s' is not a FQDN", s)
	}
	if msg := dnsFormat(s); msg != "" {
		return Invalid("dns_domain", "%s", msg)
	}
	if len(s) > fqdnMax-2 {
		return Invalid("dns_domain", "'%s' contains %d characters. Adding a sub-domain will cause it to exceed the maximum length of a FQDN of '%d'", s, len(s), fqdnMax)
	}
	return nil
}

// DefaultDNSDomain is Neutron's dns_domain default, the domain of the
// FQDNs in dns_assignment.
const DefaultDNSDomain = "openstacklocal."

// DNSAssignment is one entry of a port's dns_assignment.
type DNSAssignment struct {
	Hostname  string
	IPAddress netip.Addr
	FQDN      string
}

// Hostname is a port's host name for an address: its dns_name, or
// Neutron's "host-" and the address with dashes.
func (p *Port) Hostname(a netip.Addr) string {
	if p.DNSName != "" {
		return strings.TrimSuffix(strings.SplitN(p.DNSName, ".", 2)[0], ".")
	}
	return "host-" + strings.NewReplacer(".", "-", ":", "-").Replace(a.String())
}

// DNSAssignments are a port's dns_assignment: a host name and FQDN per
// fixed IP.
func (p *Port) DNSAssignments() []DNSAssignment {
	out := make([]DNSAssignment, 0, len(p.FixedIPs))
	for _, f := range p.FixedIPs {
		h := p.Hostname(f.IPAddress)
		fqdn := h + "." + DefaultDNSDomain
		if strings.HasSuffix(p.DNSName, ".") {
			fqdn = p.DNSName
		}
		out = append(out, DNSAssignment{Hostname: h, IPAddress: f.IPAddress, FQDN: fqdn})
	}
	return out
}
