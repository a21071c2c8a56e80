//go:build linux

package ebpf

import (
	"github.com/nagare/nagare/pkg/datapath"
	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// Offloaded frames. A VM's stack hands its port GSO super-frames (up to
// 64 KiB of TCP) with partial checksums. A flow forwards them whole: the
// kernel keeps their offload state along bpf_redirect and segments or
// completes them only where a device needs it. A super-frame that misses
// is cut here, as OVS's kernel datapath cuts before an upcall and as the
// userspace datapath does: the simulation and the MissHandler see packets
// as a wire carries them, a flow's MTU applies to segments, and Execute
// takes complete frames. Its GSO type is the kernel's (struct upcall,
// read by the program only for upcalls), so a guest's tap that lied in
// its virtio_net_hdr is caught by offload.Check as in the userspace
// datapath; the port-MTU check of its segments is the program's.

// gsoUnknown is struct upcall.gso_type where the kernel could not tell
// the program (no bpf_cast_to_kern_ctx): the type the headers imply.
const gsoUnknown = 0xff

// missState is a miss goroutine's scratch space: nothing in it outlives
// one upcall.
type missState struct {
	dec packet.Decoder // VXLAN off: a VM's traffic is opaque to us
	pkt packet.Parsed
	up  datapath.Upcall
	seg offload.Segmenter
	buf []byte // the segment being handled
}

// handleSuperFrame checks the super-frame in m.pkt against its offload
// state and hands each of its segments to handleFrame.
func (dp *Datapath) handleSuperFrame(p *port, it *upcallItem, m *missState) {
	h := offload.Hdr{GSOType: it.gsoType, GSOSize: uint16(min(it.gsoSize, 0xffff))}
	// No type with a GSO size: a program of an older agent, still
	// attached while this one adopts its maps, left the byte zero.
	if it.gsoType == gsoUnknown || it.gsoType == offload.GSONone {
		h.GSOType = impliedGSO(&m.pkt)
	}
	if e := offload.Check(&h, &m.pkt); e != offload.OK {
		dp.drops.add(datapath.OffloadDrop(e), 1)
		return
	}
	if offload.OverPortMTU(&h, &m.pkt, p.cfg.MTU) {
		dp.drops.add(datapath.DropRxOverMTU, 1)
		return
	}
	// The segmenter keeps what it needs of m.pkt, which each segment's
	// decoding then overwrites; it.frame stays as it was.
	m.seg.Init(&m.pkt, &h, 0)
	if n := m.seg.MaxLen(); cap(m.buf) < n {
		m.buf = make([]byte, n)
	}
	for !m.seg.Done() {
		n := m.seg.Next(m.buf[:cap(m.buf)])
		frame := m.buf[:n]
		m.dec.Decode(&m.pkt, frame)
		if m.pkt.Drop != packet.DropNone { // cut from a checked frame: never
			dp.drops.add(datapath.MalformedDrop(m.pkt.Drop), 1)
			return
		}
		dp.handleFrame(p, it.reason, &it.key, frame, m)
	}
}

// impliedGSO is the GSO type a super-frame's headers imply.
func impliedGSO(p *packet.Parsed) uint8 {
	switch {
	case p.L4 == packet.L4TCP && p.L3 == packet.L3IPv4:
		return offload.GSOTCPv4
	case p.L4 == packet.L4TCP && p.L3 == packet.L3IPv6:
		return offload.GSOTCPv6
	case p.L4 == packet.L4UDP:
		return offload.GSOUDPL4
	}
	return 0x7f // none Check accepts
}
