//go:build linux

package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Capture is a tcpdump running in a namespace, writing a pcap file.
type Capture struct {
	cmd    *exec.Cmd
	file   string
	stderr *syncBuffer
	done   chan struct{}
}

// StartCapture runs tcpdump -i iface with a BPF filter in ns and returns
// once it listens. Stop it with Stop; it is killed at the end of the test.
func StartCapture(t testing.TB, ns *NS, iface, filter string) *Capture {
	t.Helper()
	Require(t, "tcpdump")
	c := &Capture{file: filepath.Join(t.TempDir(), "capture.pcap"), stderr: &syncBuffer{}, done: make(chan struct{})}
	// Immediate mode and -U: each packet is read and written at once, so
	// Stop loses nothing (libpcap otherwise holds packets in a ring block
	// until it fills or times out, and a stop in between drops them).
	c.cmd = ns.Command(context.Background(), "tcpdump", "-i", iface, "--immediate-mode", "-nn", "-U", "-s", "256", "-w", c.file, filter)
	c.cmd.Stderr = c.stderr
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("tcpdump: %v", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { _ = c.cmd.Process.Kill(); <-c.done })
	err := Eventually(10*time.Second, func() error {
		if strings.Contains(c.stderr.String(), "listening on") {
			return nil
		}
		select {
		case <-c.done:
			return stop{fmt.Errorf("tcpdump exited: %s", c.stderr.String())}
		default:
			return errors.New("tcpdump not listening yet")
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Stop ends the capture (SIGINT, as an operator's Ctrl-C) and decodes it.
func (c *Capture) Stop(t testing.TB) []Encap {
	t.Helper()
	time.Sleep(200 * time.Millisecond) // the last packets in flight
	_ = c.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
	pkts, err := ReadEncaps(c.file)
	if err != nil {
		t.Fatalf("decode %s: %v (tcpdump: %s)", c.file, err, c.stderr.String())
	}
	return pkts
}

// Encap is one tunnel packet seen on the underlay, with the inner packet's
// addresses. Outer and inner IPv4 only; Kind is "vxlan", "gre", "erspan"
// (type II, Key its session ID) or "" for packets that are neither.
type Encap struct {
	Kind             string
	OuterSrc         netip.Addr
	OuterDst         netip.Addr
	UDPDstPort       uint16
	Key              uint32 // VNI or GRE key
	InnerSrc         netip.Addr
	InnerDst         netip.Addr
	InnerProto       uint8
	InnerICMPType    uint8 // for ICMP inner packets
	InnerEthType     uint16
	GREFlags, GREPro uint16
}

func (e Encap) String() string {
	return fmt.Sprintf("%s %s→%s key %d inner %s→%s proto %d type %d", e.Kind, e.OuterSrc, e.OuterDst, e.Key,
		e.InnerSrc, e.InnerDst, e.InnerProto, e.InnerICMPType)
}

// ReadEncaps decodes a pcap file of Ethernet frames. It is a decoder of its
// own rather than pkg/packet's, so that the test does not check the code
// under test with itself.
func ReadEncaps(path string) ([]Encap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var gh [24]byte
	if _, err := io.ReadFull(r, gh[:]); err != nil {
		return nil, fmt.Errorf("pcap header: %w", err)
	}
	var bo binary.ByteOrder
	switch {
	case bytes.Equal(gh[:4], []byte{0xd4, 0xc3, 0xb2, 0xa1}), bytes.Equal(gh[:4], []byte{0x4d, 0x3c, 0xb2, 0xa1}):
		bo = binary.LittleEndian
	case bytes.Equal(gh[:4], []byte{0xa1, 0xb2, 0xc3, 0xd4}), bytes.Equal(gh[:4], []byte{0xa1, 0xb2, 0x3c, 0x4d}):
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("not a pcap file (magic % x)", gh[:4])
	}
	if lt := bo.Uint32(gh[20:]); lt != 1 {
		return nil, fmt.Errorf("link type %d, want Ethernet", lt)
	}
	var out []Encap
	for {
		var rh [16]byte
		if _, err := io.ReadFull(r, rh[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return out, nil // a capture killed mid-record ends here
			}
			return out, err
		}
		data := make([]byte, bo.Uint32(rh[8:]))
		if _, err := io.ReadFull(r, data); err != nil {
			return out, nil
		}
		if e, ok := decodeEncap(data); ok {
			out = append(out, e)
		}
	}
}

func decodeEncap(b []byte) (Encap, bool) {
	var e Encap
	if len(b) >= 18 && binary.BigEndian.Uint16(b[12:]) == 0x8100 {
		b = append(b[:12:12], b[16:]...) // one 802.1Q tag: look past it
	}
	if len(b) < 14+20 || binary.BigEndian.Uint16(b[12:]) != 0x0800 {
		return e, false
	}
	ip := b[14:]
	ihl := int(ip[0]&0x0f) * 4
	if ip[0]>>4 != 4 || ihl < 20 || len(ip) < ihl {
		return e, false
	}
	e.OuterSrc = netip.AddrFrom4([4]byte(ip[12:16]))
	e.OuterDst = netip.AddrFrom4([4]byte(ip[16:20]))
	l4 := ip[ihl:]
	var inner []byte
	switch ip[9] {
	case 17:
		if len(l4) < 8+8 {
			return e, false
		}
		e.UDPDstPort = binary.BigEndian.Uint16(l4[2:])
		vx := l4[8:]
		e.Kind = "vxlan"
		e.Key = binary.BigEndian.Uint32(vx[4:]) >> 8
		inner = vx[8:]
	case 47:
		if len(l4) < 4 {
			return e, false
		}
		e.Kind = "gre"
		e.GREFlags, e.GREPro = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
		off := 4
		if e.GREFlags&0x8000 != 0 { // checksum present
			off += 4
		}
		if e.GREFlags&0x2000 != 0 { // key present
			if len(l4) < off+4 {
				return e, false
			}
			e.Key = binary.BigEndian.Uint32(l4[off:])
			off += 4
		}
		if e.GREFlags&0x1000 != 0 { // sequence number
			off += 4
		}
		if len(l4) < off {
			return e, false
		}
		inner = l4[off:]
		if e.GREPro == 0x88be { // ERSPAN type II: version, VLAN, session ID, index
			if len(inner) < 8 || inner[0]>>4 != 1 {
				return e, false
			}
			e.Kind, e.Key = "erspan", uint32(binary.BigEndian.Uint16(inner[2:])&0x3ff)
			inner = inner[8:]
		}
	default:
		return e, true
	}
	if len(inner) < 14 {
		return e, true
	}
	e.InnerEthType = binary.BigEndian.Uint16(inner[12:])
	if e.InnerEthType == 0x0800 && len(inner) >= 14+20 {
		iip := inner[14:]
		e.InnerSrc = netip.AddrFrom4([4]byte(iip[12:16]))
		e.InnerDst = netip.AddrFrom4([4]byte(iip[16:20]))
		e.InnerProto = iip[9]
		if ihl := int(iip[0]&0x0f) * 4; e.InnerProto == 1 && len(iip) > ihl {
			e.InnerICMPType = iip[ihl]
		}
	}
	return e, true
}
