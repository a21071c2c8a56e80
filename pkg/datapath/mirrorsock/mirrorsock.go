//go:build linux

// Package mirrorsock sends port mirrors' copies (flow.ActMirror) for the
// datapaths of the kernel's interfaces: GRE or ERSPAN II in IPv4 protocol
// 47, over a raw socket of protocol IPPROTO_RAW in the datapath's network
// namespace. Such a socket receives nothing, and its sender writes the IP
// header itself: the source is the host's underlay address.
package mirrorsock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/netns"
	"github.com/nagare/nagare/pkg/packet"
)

// ErrClosed: the sender was closed.
var ErrClosed = errors.New("mirrorsock: closed")

// Sender is a datapath's mirror socket, opened on the first copy. It is
// safe for concurrent use; copies are rare and each is one sendto.
type Sender struct {
	netns string // the namespace's path, "" for the caller's

	once sync.Once
	mu   sync.Mutex
	fd   int
	err  error
	seq  uint32 // ERSPAN sequence numbers
	buf  []byte
}

// New returns the sender of the namespace at path ("" for the caller's).
func New(path string) *Sender { return &Sender{netns: path} }

func (s *Sender) open() {
	s.once.Do(func() {
		s.fd = -1
		open := func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
			if err == nil {
				s.fd = fd
			}
			return err
		}
		if s.netns == "" {
			s.err = open()
		} else {
			s.err = netns.DoPath(s.netns, open)
		}
		if s.err != nil {
			s.err = fmt.Errorf("mirrorsock: %w", s.err)
		}
		s.buf = make([]byte, 20+packet.MirrorHdrMax+65536)
	})
}

// Send sends frame to dst, GRE (key) or ERSPAN II (key's low 10 bits as
// the session ID), from src (an invalid src lets the kernel choose).
func (s *Sender) Send(src, dst netip.Addr, kind packet.Tunnel, key uint32, frame []byte) error {
	s.open()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if !dst.Unmap().Is4() {
		return fmt.Errorf("mirrorsock: %s: only IPv4 endpoints are supported", dst)
	}
	s.seq++
	n, err := packet.EncapMirror(s.buf[20:], frame, kind, key, s.seq)
	if err != nil {
		return fmt.Errorf("mirrorsock: %w", err)
	}
	ip := s.buf[:20]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], uint16(20+n))
	binary.BigEndian.PutUint32(ip[4:], 0x4000) // ID 0 (the kernel fills it), DF
	ip[8], ip[9] = 64, 47
	binary.BigEndian.PutUint16(ip[10:], 0) // the kernel fills the checksum
	var from [4]byte
	if src = src.Unmap(); src.Is4() {
		from = src.As4()
	}
	to := dst.Unmap().As4()
	copy(ip[12:16], from[:])
	copy(ip[16:20], to[:])
	return unix.Sendto(s.fd, s.buf[:20+n], 0, &unix.SockaddrInet4{Addr: to})
}

// Close closes the socket if it was opened; later sends fail.
func (s *Sender) Close() error {
	opened := true
	s.once.Do(func() { opened, s.err, s.fd = false, ErrClosed, -1 })
	s.mu.Lock()
	defer s.mu.Unlock()
	if !opened || s.fd < 0 {
		return nil
	}
	fd := s.fd
	s.fd, s.err = -1, ErrClosed
	return unix.Close(fd)
}
