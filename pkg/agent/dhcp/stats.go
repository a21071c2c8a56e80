package dhcp

import "sync/atomic"

// DropReason says why Handle answered nothing. Its String is a metrics label.
type DropReason uint8

const (
	// DropTruncated: the frame ends before a header or the IP length it
	// declares.
	DropTruncated DropReason = iota
	// DropNotDHCP: not untagged IPv4/UDP to port 67. The datapath's
	// classifier should not have sent it here.
	DropNotDHCP
	// DropBadIPv4: IPv4 version, header length or total length is wrong.
	DropBadIPv4
	// DropFragment: DHCP requests fit one datagram; a fragment is either
	// broken or an attempt to smuggle something past the classifier.
	DropFragment
	// DropBadChecksum: the IPv4 header checksum is wrong. The UDP checksum
	// is not checked: with checksum offload a VM's frames may carry a
	// partial UDP checksum, and DHCP has no use for the check.
	DropBadChecksum
	// DropBadUDP: the UDP length is shorter than its header or longer
	// than the IP datagram.
	DropBadUDP
	// DropBadOp: op is not BOOTREQUEST.
	DropBadOp
	// DropBadHardware: not Ethernet (htype 1, hlen 6), or chaddr is zero or
	// a group address.
	DropBadHardware
	// DropChaddrMismatch: chaddr is not the frame's Ethernet source. Port
	// security pins a port's source MAC, not chaddr; without this check a
	// VM could ask for another VM's fixed address and host name.
	DropChaddrMismatch
	// DropBadCookie: the magic cookie is not 99.130.83.99.
	DropBadCookie
	// DropBadOptions: an option overruns the message, has the wrong length
	// for its code, or is repeated (RFC 3396 would concatenate the copies,
	// which no valid message type, address or server identifier survives).
	DropBadOptions
	// DropNoMessageType: a BOOTP request (no option 53); Nagare only
	// speaks DHCP.
	DropNoMessageType
	// DropBadMessageType: a server message type (OFFER, ACK, NAK) or an
	// unknown one.
	DropBadMessageType
	// DropRelayed: giaddr is set. DHCP never leaves the host, so a relayed
	// request comes from a VM relaying for networks Nagare does not serve.
	DropRelayed
	// DropBadRequest: breaks RFC 2131: a REQUEST naming no address, an
	// INFORM without ciaddr, a DECLINE without a requested address.
	DropBadRequest
	// DropNoSubnet: the bridge has no DHCP subnet for this client.
	DropNoSubnet
	// DropDisabled: the client's subnet is disabled.
	DropDisabled
	// DropNotForUs: the client chose, or is talking to, another server.
	DropNotForUs
	// DropPoolExhausted: no pool address is free for a client without a
	// fixed address.
	DropPoolExhausted
	// DropOutTooSmall: the caller's out buffer cannot hold the reply
	// (MaxReplyLen always can).
	DropOutTooSmall

	// NumDropReasons sizes arrays indexed by DropReason.
	NumDropReasons
)

var dropNames = [NumDropReasons]string{
	"truncated", "not_dhcp", "bad_ipv4", "fragment", "bad_checksum", "bad_udp",
	"bad_op", "bad_hardware", "chaddr_mismatch", "bad_cookie", "bad_options",
	"no_message_type", "bad_message_type", "relayed", "bad_request", "no_subnet",
	"disabled", "not_for_us", "pool_exhausted", "out_too_small",
}

func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Stats is a snapshot of a Server's counters.
type Stats struct {
	Offers   uint64 // DHCPOFFERs sent
	Acks     uint64 // DHCPACKs sent, INFORM answers included
	Naks     uint64 // DHCPNAKs sent
	Informs  uint64 // DHCPINFORMs answered (also counted in Acks)
	Releases uint64 // DHCPRELEASEs accepted
	Declines uint64 // DHCPDECLINEs accepted
	// Drops counts frames answered with nothing, by reason. RELEASE and
	// DECLINE, which take no answer, are not drops.
	Drops [NumDropReasons]uint64
}

// counters are atomic so that a metrics scrape can read them without taking
// the lock the per-packet path holds.
type counters struct {
	offers, acks, naks, informs, releases, declines atomic.Uint64
	drops                                           [NumDropReasons]atomic.Uint64
}

func (c *counters) snapshot() Stats {
	s := Stats{
		Offers: c.offers.Load(), Acks: c.acks.Load(), Naks: c.naks.Load(),
		Informs: c.informs.Load(), Releases: c.releases.Load(), Declines: c.declines.Load(),
	}
	for i := range c.drops {
		s.Drops[i] = c.drops[i].Load()
	}
	return s
}
