//go:build linux

package userspace

import (
	"github.com/nagare/nagare/pkg/flow"
	"github.com/nagare/nagare/pkg/offload"
)

// Offloaded frames on the hit path.
//
// A port's frames come with the offload state the sending stack left
// them in (pkg/offload): a partial TCP/UDP checksum, and for a TSO/GSO
// stack super-frames of up to 64 KiB. What happens to them depends on
// where the flow sends them, decided once per frame (per super-frame, not
// per segment: one lookup carries up to 45 segments):
//
//   - Local ports only: the frame leaves with its state, through the
//     port's PACKET_VNET_HDR socket, as the kernel passes a veth's or a
//     tap's frames on: the receiving stack takes a partial checksum as
//     verified and a super-frame whole, or the kernel segments and
//     completes it in software before a device that cannot (a tap whose
//     guest did not negotiate TSO). NAT rewrites keep a partial checksum a
//     valid seed (packet.Parsed.L4CsumPartial); VLAN pushes and pops move
//     its offsets.
//   - A tunnel: no header carries that state to the peer, so a partial
//     checksum is completed and a super-frame is cut into segments that
//     fit the underlay (offload.Segmenter), each a complete frame; the
//     tunnel queue then sends runs of equal segments to one peer as one
//     UDP GSO datagram.
//   - A NAT rewrite of a frame whose partial checksum is not its L4
//     checksum: completed first, since a rewrite cannot know what the
//     sender asked to have summed.

// flowNeeds reports what a flow's actions ask of an offloaded frame: an
// encapsulation (or a remote mirror), and a NAT rewrite. Setting a DSCP
// is neither: the IPv4 header checksum it fixes is always complete, and
// no L4 checksum covers the DSCP.
func flowNeeds(acts []action) (encap, rewrites bool) {
	for i := range acts {
		switch acts[i].Type {
		case flow.ActEncap, flow.ActMirror:
			// A mirror's remote copy is a tunnel packet too (GRE or
			// ERSPAN): complete and cut to fit the underlay.
			encap = true
		case flow.ActSetIPSrc, flow.ActSetIPDst, flow.ActSetL4Src, flow.ActSetL4Dst, flow.ActSetICMPID, flow.ActInnerSrc, flow.ActInnerDst:
			rewrites = true
		}
	}
	return encap, rewrites
}

// applyReceived applies f's actions to a received frame (decoded in
// w.pkt) with offload state oh, as the comment above says.
func (w *worker) applyReceived(buf []byte, start, end int, f *flowEntry, oh *offload.Hdr) bool {
	if oh.IsZero() {
		w.partialL4 = false
		return w.apply(buf, start, end, f.acts, nil)
	}
	switch {
	case oh.IsGSO() && f.encap:
		return w.applySegments(f, oh)
	case oh.NeedsCsum() && (f.encap || f.rewrites && !w.pkt.L4CsumPartial):
		offload.CompleteFrame(oh, &w.pkt)
		w.partialL4 = false
		return w.apply(buf, start, end, f.acts, nil)
	}
	w.partialL4 = w.pkt.L4CsumPartial
	return w.apply(buf, start, end, f.acts, oh)
}

// applySegments cuts the super-frame in w.pkt into segments that fit the
// tunnel and applies f's actions to each.
func (w *worker) applySegments(f *flowEntry, oh *offload.Hdr) bool {
	mss := 0
	if limit := w.segmentLimit(f); limit > 0 {
		mss = max(limit-(w.pkt.PayloadOff-w.pkt.L3Off), 1)
	}
	w.seg.Init(&w.pkt, oh, mss)
	w.partialL4 = false
	sent := false
	for !w.seg.Done() {
		slot := w.segSlot()
		n := w.seg.Next(slot[headroom:])
		if w.apply(slot, headroom, headroom+n, f.acts, nil) {
			sent = true
		}
	}
	return sent
}

// segmentLimit returns the largest IP datagram a segment of a tunnelled
// flow may be: the flow's MTU (the simulation's, for tunnels the underlay
// MTU less the encapsulation), and the underlay's own less the VXLAN
// overhead; 0 if neither is known.
func (w *worker) segmentLimit(f *flowEntry) int {
	limit := f.mtu
	if u := int(w.dp.underlayMTU.Load()); u > 0 {
		u -= encapOverhead
		if limit == 0 || u < limit {
			limit = u
		}
	}
	return limit
}

// encapOverhead is what VXLAN over IPv4 adds to an inner IP packet: outer
// IPv4 (20), UDP (8), VXLAN (8) and the inner Ethernet header (14). GRE
// adds less (42), so segments sized for VXLAN fit both.
const encapOverhead = 50
