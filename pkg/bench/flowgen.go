package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/packet"
)

// FlowGenConfig configures the new-flow generator: the baseline's udpgen
// cycles over 8 flows, so measuring flow setup needs frames that each carry a
// 5-tuple never seen before. Frame i has UDP source port 1024+i%64512 and
// the last octet of SrcIP replaced by flowGenHosts[i/64512%len], so 15
// million frames pass before a 5-tuple repeats. Destination port 9, where
// the baseline's sink drops.
type FlowGenConfig struct {
	Interface      string
	DstMAC, SrcMAC net.HardwareAddr
	SrcIP, DstIP   netip.Addr
	Rate           float64       // frames per second; 0 sends as fast as the socket takes them
	Duration       time.Duration // how long to send
	Start          uint64        // index of the first flow: repetitions pass different ones
	Cycle          uint64        // if not 0, cycle over this many flows from Start (a steady-state load)
	Batch          int           // frames per sendmmsg (default 32)
}

// FlowGenResult is what the generator sent.
type FlowGenResult struct {
	Sent    uint64
	Elapsed time.Duration
	Retries uint64 // sendmmsg calls refused with EAGAIN/ENOBUFS
}

const (
	flowGenPorts   = 65536 - 1024
	flowGenLen     = 60 // 64 bytes on the wire with the FCS, like udpgen
	flowGenPayload = flowGenLen - 42
)

// flowGenHosts are the source-address octets used: inside a /24 and away
// from the .1/.2 the VMs use and the .254 of a router port.
var flowGenHosts = func() []byte {
	var h []byte
	for o := 10; o < 250; o++ {
		h = append(h, byte(o))
	}
	return h
}()

// RunFlowGen sends new-flow frames out of cfg.Interface (in the caller's
// network namespace) through an AF_PACKET socket with sendmmsg and qdisc
// bypass, as udpgen does. The pacing sleeps rather than spins, so a paced
// generator leaves the CPU it shares to the datapath.
func RunFlowGen(ctx context.Context, cfg FlowGenConfig) (FlowGenResult, error) {
	var res FlowGenResult
	if cfg.Batch <= 0 {
		cfg.Batch = 32
	}
	if !cfg.SrcIP.Is4() || !cfg.DstIP.Is4() || len(cfg.DstMAC) != 6 || len(cfg.SrcMAC) != 6 {
		return res, fmt.Errorf("flowgen: need IPv4 addresses and Ethernet MACs")
	}
	ifi, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return res, fmt.Errorf("flowgen: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0) // protocol 0: never receives
	if err != nil {
		return res, fmt.Errorf("flowgen: AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20)
	sll := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6}
	copy(sll.Addr[:], cfg.DstMAC)
	if err := unix.Bind(fd, sll); err != nil {
		return res, fmt.Errorf("flowgen: bind %s: %w", cfg.Interface, err)
	}

	frames := make([]byte, cfg.Batch*flowGenLen)
	iovs := make([]unix.Iovec, cfg.Batch)
	msgs := make([]unix.Mmsghdr, cfg.Batch)
	src, dst := cfg.SrcIP.As4(), cfg.DstIP.As4()
	for i := range cfg.Batch {
		f := frames[i*flowGenLen : (i+1)*flowGenLen]
		writeFlowFrame(f, cfg.DstMAC, cfg.SrcMAC, src, dst)
		iovs[i].Base = &f[0]
		iovs[i].SetLen(flowGenLen)
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
	}

	start := time.Now()
	end := start.Add(cfg.Duration)
	for ctx.Err() == nil {
		now := time.Now()
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(res.Sent) / cfg.Rate * float64(time.Second)))
			if due.After(now) {
				time.Sleep(due.Sub(now))
				now = time.Now()
			}
		}
		if now.After(end) {
			break
		}
		for i := range cfg.Batch {
			n := res.Sent + uint64(i)
			if cfg.Cycle > 0 {
				n %= cfg.Cycle
			}
			setFlow(frames[i*flowGenLen:(i+1)*flowGenLen], cfg.Start+n)
		}
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(cfg.Batch), unix.MSG_DONTWAIT, 0, 0)
		switch e {
		case 0:
			res.Sent += uint64(r)
		case unix.EAGAIN, unix.ENOBUFS, unix.EINTR:
			res.Retries++
		default:
			return res, fmt.Errorf("flowgen: sendmmsg: %w", e)
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// writeFlowFrame fills the parts of a frame that every flow shares.
func writeFlowFrame(f []byte, dmac, smac net.HardwareAddr, src, dst [4]byte) {
	copy(f[0:6], dmac)
	copy(f[6:12], smac)
	binary.BigEndian.PutUint16(f[12:], packet.EtherTypeIPv4)
	ip := f[14:34]
	ip[0], ip[1] = 0x45, 0
	binary.BigEndian.PutUint16(ip[2:], 20+8+flowGenPayload)
	ip[6], ip[7] = 0x40, 0 // don't fragment
	ip[8], ip[9] = 64, packet.IPProtoUDP
	copy(ip[12:16], src[:])
	copy(ip[16:20], dst[:])
	udp := f[34:42]
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], 8+flowGenPayload)
	// UDP checksum 0: none, legal over IPv4, and one less sum per frame.
	for i := range flowGenPayload {
		f[42+i] = byte(i)
	}
}

// setFlow writes flow n's source address and port and the IP checksum.
func setFlow(f []byte, n uint64) {
	ip := f[14:34]
	ip[15] = flowGenHosts[(n/flowGenPorts)%uint64(len(flowGenHosts))]
	binary.BigEndian.PutUint16(ip[4:], uint16(n)) // IP ID
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	binary.BigEndian.PutUint16(f[34:], uint16(1024+n%flowGenPorts))
}

func ipChecksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
