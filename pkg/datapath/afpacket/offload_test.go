//go:build linux

package afpacket

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/offload"
	"github.com/nagare/nagare/pkg/packet"
)

// TestOffloadMetadata: a real TCP stack behind a veth with its default
// offloads hands the port partial checksums and GSO super-frames, which
// arrive whole with their virtio_net_hdr; the header is what pkg/offload
// expects, and segmenting the super-frame with it gives segments whose
// checksums verify. This is the kernel's side of the offload contract,
// checked against the code that relies on it.
func TestOffloadMetadata(t *testing.T) {
	v := newVethPair(t)
	v.A.Run(t, "ip", "addr", "add", "10.77.0.1/24", "dev", ifA)
	v.B.Run(t, "ip", "addr", "add", "10.77.0.2/24", "dev", ifB)
	port := openPort(t, v.B, ifB, Options{VnetHdr: true, PollTimeout: 200 * time.Millisecond})

	// A TCP sink in B and a sender in A writing 1 MiB in big writes.
	var ln net.Listener
	if err := v.B.Do(func() (err error) { ln, err = net.Listen("tcp4", "10.77.0.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	sent := make(chan error, 1)
	go func() {
		var c net.Conn
		err := v.A.Do(func() (err error) { c, err = net.Dial("tcp4", ln.Addr().String()); return err })
		if err == nil {
			_, err = c.Write(make([]byte, 1<<20))
			c.Close()
		}
		sent <- err
	}()

	bufs, sizes := makeBufs(64, 2048)
	hdrs := make([]offload.Hdr, 64)
	b := Batch{Bufs: bufs, Sizes: sizes, Hdrs: hdrs, Jumbo: make([]byte, 70000)}
	var partial, gso int
	deadline := time.Now().Add(5 * time.Second)
	for gso < 3 && time.Now().Before(deadline) {
		n, err := port.Receive(&b)
		if err == ErrTimeout {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			f := b.Frame(i)
			if err := checkOffloaded(f, &hdrs[i]); err != nil {
				t.Fatalf("frame %d bytes, header %+v: %v", len(f), hdrs[i], err)
			}
			if hdrs[i].NeedsCsum() {
				partial++
			}
			if hdrs[i].IsGSO() {
				gso++
			}
		}
	}
	if err := <-sent; err != nil {
		t.Fatalf("TCP sender: %v", err)
	}
	if partial == 0 || gso == 0 {
		t.Fatalf("saw %d partial-checksum and %d GSO frames from a stack with default offloads, want some of each", partial, gso)
	}
	t.Logf("%d partial-checksum frames, %d GSO super-frames", partial, gso)
}

// checkOffloaded checks a frame from a TCP stack against its header: it
// passes offload.Check, and completing it (or segmenting it) yields
// checksums that verify.
func checkOffloaded(f []byte, h *offload.Hdr) error {
	var p packet.Parsed
	(&packet.Decoder{}).Decode(&p, f)
	if p.Drop != packet.DropNone || p.L4 != packet.L4TCP {
		return nil // ARP and the like
	}
	if e := offload.Check(h, &p); e != offload.OK {
		return fmt.Errorf("offload.Check: %v", e)
	}
	if !h.NeedsCsum() {
		return nil
	}
	if !offload.IsL4Csum(h, &p) {
		return fmt.Errorf("partial checksum not at the TCP checksum")
	}
	var seg offload.Segmenter
	mss := 0
	if !h.IsGSO() {
		// One "segment": the frame with its checksum completed.
		h2 := *h
		h2.GSOSize = uint16(p.L3End - p.PayloadOff + 1)
		h = &h2
	} else {
		mss = int(h.GSOSize)
	}
	seg.Init(&p, h, mss)
	buf := make([]byte, seg.MaxLen())
	var payload []byte
	for !seg.Done() {
		n := seg.Next(buf)
		var q packet.Parsed
		(&packet.Decoder{}).Decode(&q, buf[:n])
		if q.Drop != packet.DropNone || !q.IPChecksumOK {
			return fmt.Errorf("segment does not decode (%v) or IP checksum bad", q.Drop)
		}
		if packet.Checksum(buf[q.L4Off:q.L3End], packet.PseudoHeaderSum(q.SrcIP, q.DstIP, q.IPProto, q.L3End-q.L4Off)) != 0 {
			return fmt.Errorf("segment's TCP checksum does not verify")
		}
		payload = append(payload, buf[q.PayloadOff:q.L3End]...)
	}
	if !bytes.Equal(payload, f[p.PayloadOff:p.L3End]) {
		return fmt.Errorf("segments carry other bytes than the super-frame")
	}
	return nil
}

// TestWriteOffloaded: a GSO super-frame written with its header leaves as
// one, and the peer's port receives the same header back (the kernel keeps
// the frame whole across the veth); a header on a port without VnetHdr is
// refused and counted.
func TestWriteOffloaded(t *testing.T) {
	v := newVethPair(t)
	tx := openPort(t, v.A, ifA, Options{VnetHdr: true})
	rx := openPort(t, v.B, ifB, Options{VnetHdr: true, PollTimeout: 2 * time.Second})
	frame, h := gsoFrame(20000, 1448)
	if n, err := tx.Write([][]byte{frame}, []offload.Hdr{h}); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v (stats %+v)", n, err, tx.Stats())
	}
	bufs, sizes := makeBufs(4, 2048)
	hdrs := make([]offload.Hdr, 4)
	b := Batch{Bufs: bufs, Sizes: sizes, Hdrs: hdrs, Jumbo: make([]byte, 70000)}
	n, err := rx.Receive(&b)
	if err != nil || n != 1 || b.JumboIndex != 0 {
		t.Fatalf("Receive = %d, %v, jumbo index %d; want the one super-frame in Jumbo", n, err, b.JumboIndex)
	}
	if got := b.Jumbo[:sizes[0]]; !bytes.Equal(got, frame) {
		t.Fatalf("received %d bytes, sent %d: not the same frame", len(got), len(frame))
	}
	if hdrs[0].GSOType != h.GSOType || hdrs[0].GSOSize != h.GSOSize || hdrs[0].CsumStart != h.CsumStart || hdrs[0].CsumOffset != h.CsumOffset || !hdrs[0].NeedsCsum() {
		t.Fatalf("received header %+v, sent %+v", hdrs[0], h)
	}

	plain := openPort(t, v.A, ifA, Options{})
	if n, err := plain.Write([][]byte{frame}, []offload.Hdr{h}); n != 0 || err != nil {
		t.Fatalf("Write of an offloaded frame on a port without VnetHdr = %d, %v; want 0, nil", n, err)
	}
	if s := plain.Stats(); s.TxErrors != 1 {
		t.Errorf("stats %+v, want the refused frame counted", s)
	}
}

// gsoFrame builds an IPv4 TCP super-frame as a TSO stack hands it over:
// partial checksum (the pseudo-header seed) and its virtio_net_hdr.
func gsoFrame(payload, mss int) ([]byte, offload.Hdr) {
	const l3, l4 = 14, 34
	f := make([]byte, l4+20+payload)
	copy(f, macB)
	copy(f[6:], macA)
	f[12], f[13] = 0x08, 0x00
	ip := f[l3:]
	ip[0] = 0x45
	ip[2], ip[3] = byte((20+20+payload)>>8), byte(20+20+payload)
	ip[6] = 0x40
	ip[8], ip[9] = 64, packet.IPProtoTCP
	copy(ip[12:], []byte{10, 77, 0, 1, 10, 77, 0, 2})
	sum := packet.IPv4HeaderChecksum(ip[:20])
	ip[10], ip[11] = byte(sum>>8), byte(sum)
	tcp := f[l4:]
	tcp[0], tcp[1], tcp[2], tcp[3] = 0x9c, 0x40, 0x13, 0x89
	tcp[12], tcp[13] = 5<<4, packet.TCPAck
	tcp[14], tcp[15] = 0xff, 0xff
	for i := range payload {
		f[l4+20+i] = byte(i)
	}
	var p packet.Parsed
	(&packet.Decoder{}).Decode(&p, f)
	seed := offload.Seed(p.SrcIP, p.DstIP, packet.IPProtoTCP, 20+payload)
	tcp[16], tcp[17] = byte(seed>>8), byte(seed)
	return f, offload.Hdr{Flags: offload.FlagNeedsCsum, GSOType: offload.GSOTCPv4, HdrLen: l4 + 20,
		GSOSize: uint16(mss), CsumStart: l4, CsumOffset: 16}
}
