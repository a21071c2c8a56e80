package packet

import (
	"bytes"
	"errors"
	"testing"
)

func TestVXLANRoundTrip(t *testing.T) {
	inner := tcp4Frame()
	buf := make([]byte, 200)
	n, err := EncapVXLAN(buf, inner, 0xfedcba)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "header", string(buf[:8]), string([]byte{0x08, 0, 0, 0, 0xfe, 0xdc, 0xba, 0}))
	vni, got, err := DecapVXLAN(buf[:n])
	if err != nil || vni != 0xfedcba || !bytes.Equal(got, inner) {
		t.Fatalf("DecapVXLAN = %#x, %x, %v", vni, got, err)
	}
	// The same bytes behind UDP/IP decode as a tunnel frame.
	u := udpH("192.0.2.1", "192.0.2.2", 1, DefaultVXLANPort, buf[:n])
	p := decode(cat(ethH(macB, macA, EtherTypeIPv4), ip4H("192.0.2.1", "192.0.2.2", IPProtoUDP, len(u)), u))
	eq(t, "TunnelID", p.TunnelID, 0xfedcba)
	eq(t, "Inner", string(p.Inner()), string(inner))

	if _, err := EncapVXLAN(buf, inner, 1<<24); !errors.Is(err, ErrBadArgument) {
		t.Errorf("25-bit VNI: %v", err)
	}
	if _, err := EncapVXLAN(buf[:n-1], inner, 1); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("short buffer: %v", err)
	}
	buf[0] = 0
	if _, _, err := DecapVXLAN(buf[:n]); !errors.Is(err, ErrMalformed) {
		t.Errorf("I flag clear: %v", err)
	}
	if _, _, err := DecapVXLAN(buf[:7]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short header: %v", err)
	}
}

func TestGRERoundTrip(t *testing.T) {
	inner := tcp6Frame()
	buf := make([]byte, 200)
	n, err := EncapGRE(buf, inner, 0x01020304)
	if err != nil {
		t.Fatal(err)
	}
	key, got, err := DecapGRE(buf[:n])
	if err != nil || key != 0x01020304 || !bytes.Equal(got, inner) {
		t.Fatalf("DecapGRE = %#x, %x, %v", key, got, err)
	}
	p := decode(cat(ethH(macB, macA, EtherTypeIPv4), ip4H("192.0.2.1", "192.0.2.2", IPProtoGRE, n), buf[:n]))
	wantLayers(t, p, DropNone, L3IPv4, L4GRE)
	eq(t, "TunnelID", p.TunnelID, 0x01020304)
	eq(t, "Inner", string(p.Inner()), string(inner))

	if _, err := EncapGRE(buf[:n-1], inner, 1); !errors.Is(err, ErrShortBuffer) {
		t.Errorf("short buffer: %v", err)
	}
	for name, hdr := range map[string][]byte{
		"no key":      cat(u16(0), u16(EtherTypeTEB)),
		"not TEB":     cat(u16(greK), u16(EtherTypeIPv4), u32(1)),
		"version 1":   cat(u16(greK|1), u16(EtherTypeTEB), u32(1)),
		"short key":   cat(u16(greK), u16(EtherTypeTEB), []byte{1}),
		"routing bit": cat(u16(greK|0x4000), u16(EtherTypeTEB), u32(1)),
	} {
		if _, _, err := DecapGRE(cat(hdr, inner)[:len(hdr)]); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	// With checksum and sequence number present the key is still found.
	full := cat(u16(greC|greK|greS), u16(EtherTypeTEB), u32(0), u32(77), u32(5), inner)
	if key, got, err := DecapGRE(full); err != nil || key != 77 || !bytes.Equal(got, inner) {
		t.Errorf("C+K+S: %d %v", key, err)
	}
}
