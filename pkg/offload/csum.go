package offload

import (
	"encoding/binary"
	"net/netip"

	"github.com/nagare/nagare/pkg/packet"
)

// Complete does what a NIC does for a NEEDS_CSUM frame: it sums
// frame[start:end] (the checksum field, inside that range, holds the
// sender's seed), and stores the folded complement at start+off. As in the
// kernel's skb_checksum_help, a result of zero is sent as 0xffff, which is
// the same number in one's complement and, for UDP, not "no checksum". The
// caller has checked the offsets (Check); end is normally the end of the
// IP datagram, so Ethernet padding is not summed.
func Complete(frame []byte, start, off, end int) {
	sum := packet.Checksum(frame[start:end], 0)
	if sum == 0 {
		sum = 0xffff
	}
	binary.BigEndian.PutUint16(frame[start+off:], sum)
}

// CompleteFrame completes p's partial checksum as h describes it, up to the
// end of the IP datagram when the checksum is the L4 one and up to the end
// of the frame otherwise (the kernel's rule: it cannot know better), and
// clears p.L4CsumPartial. h has passed Check.
func CompleteFrame(h *Hdr, p *packet.Parsed) {
	end := len(p.Frame())
	if IsL4Csum(h, p) {
		end = PayloadEnd(p)
	}
	Complete(p.Frame(), int(h.CsumStart), int(h.CsumOffset), end)
	p.L4CsumPartial = false
}

// Seed returns what a sender with checksum offload puts in the TCP/UDP
// checksum field: the folded (not complemented) pseudo-header sum for an
// upper-layer length of l4Len.
func Seed(src, dst netip.Addr, proto uint8, l4Len int) uint16 {
	return ^packet.Checksum(nil, packet.PseudoHeaderSum(src, dst, proto, l4Len))
}
