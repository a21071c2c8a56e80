package offload

import (
	"testing"

	"github.com/nagare/nagare/pkg/packet"
)

// FuzzOffload feeds arbitrary frames with arbitrary virtio_net_hdrs — what
// a hostile guest controls — through what the datapath does with them:
// Check, then completing the checksum and segmenting what Check passed.
// Nothing may panic; whatever Check passes must segment into frames that
// decode, verify and carry the original payload.
func FuzzOffload(f *testing.F) {
	for _, c := range []struct {
		s   super
		mss int
	}{
		{super{payload: 5000, partial: true}, 1448},
		{super{v6: true, payload: 3000, partial: true, flags: packet.TCPFin | packet.TCPPsh}, 1000},
		{super{udp: true, payload: 2500, partial: true}, 700},
		{super{vlan: 7, payload: 100, partial: true}, 0},
		{super{payload: 4000, opts: 12}, 1448},
	} {
		frame, h := c.s.build(c.mss)
		var hb [HdrLen]byte
		h.Encode(hb[:])
		f.Add(hb[:], frame, uint16(0))
		f.Add(hb[:], frame, uint16(536))
	}
	f.Fuzz(func(t *testing.T, hb, frame []byte, egressMSS uint16) {
		if len(hb) < HdrLen {
			return
		}
		h := Decode(hb)
		p := decode(frame)
		if p.Drop != packet.DropNone {
			return
		}
		if Check(&h, p) != OK {
			return
		}
		orig := append([]byte(nil), frame...)
		if h.IsGSO() {
			// A datapath asks for segments no smaller than a minimal
			// IPv4 MTU leaves room for; a tiny egress MSS would only make
			// the fuzzer slow.
			mss := int(h.GSOSize)
			if egressMSS != 0 {
				mss = min(mss, max(int(egressMSS), 256))
			}
			segs := segmentAll(p, &h, mss)
			limit := MaxSegments
			if p.L4 == packet.L4UDP {
				limit = MaxUDPSegments
			}
			if mss == int(h.GSOSize) && len(segs) > limit {
				t.Fatalf("%d segments, more than the %d Check allows", len(segs), limit)
			}
			if err := verifySegments(orig, segs, mss); err != nil {
				t.Fatal(err)
			}
			if string(frame) != string(orig) {
				t.Fatal("segmenting modified the super-frame")
			}
		}
		if h.NeedsCsum() {
			p.L4CsumPartial = IsL4Csum(&h, p)
			CompleteFrame(&h, p)
		}
	})
}
