//go:build linux

package afpacket

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/netns"
)

// Errors returned by Port methods.
var (
	// ErrClosed is returned by ReadBatch, Recv and WriteBatch once Close has
	// been called, including to calls that were blocked when Close ran.
	ErrClosed = errors.New("afpacket: port closed")
	// ErrTimeout is returned by ReadBatch and Recv when Options.PollTimeout
	// elapsed with no frame to return. The port stays usable.
	ErrTimeout = errors.New("afpacket: receive timed out")
)

// Options tunes a Port. The zero value gives the defaults, which suit a
// 2-core host with a few VM ports: 32 blocks of 128 KiB (4 MiB per port).
//
// With TPACKET_V3 the number of blocks matters more than their size: at
// moderate rates the kernel retires each block after BlockTimeout with only
// rate × BlockTimeout frames in it, so the ring absorbs a stalled reader for
// about NumBlocks × BlockTimeout (32 ms by default) before it drops.
type Options struct {
	// BlockSize is the size in bytes of one RX ring block, a multiple of the
	// page size (default 128 KiB). It is also the largest frame the ring can
	// hold: bigger ones are counted in RxTruncated. Keep it above 64 KiB if
	// the interface can deliver GRO/TSO super-frames.
	BlockSize int
	// NumBlocks is the number of RX ring blocks (default 32). When all blocks
	// are full the kernel drops frames and counts them in RxDrops.
	NumBlocks int
	// FrameSize is the nominal RX frame slot the kernel asks for (default
	// 2048, a multiple of 16 dividing BlockSize). TPACKET_V3 packs frames of
	// any size into blocks, so it does not limit frame length.
	FrameSize int
	// BlockTimeout is how long the kernel waits before handing a partially
	// filled block to us (retire_blk_tov, millisecond resolution, default
	// 1 ms). It bounds receive latency at low packet rates, and the kernel
	// rounds it up to its timer tick.
	BlockTimeout time.Duration
	// PollTimeout makes ReadBatch and Recv return ErrTimeout when no frame
	// arrived for this long. Zero waits until a frame arrives or Close.
	PollTimeout time.Duration
	// NoPromisc leaves the interface's promiscuous mode alone. By default the
	// port turns it on, because a VM's frames are addressed to MACs other
	// than the host-side interface's own.
	NoPromisc bool
	// QdiscBypass hands frames straight to the driver (PACKET_QDISC_BYPASS),
	// skipping the qdisc, tc egress programs and packet taps: tcpdump on the
	// interface no longer shows what the datapath sends. It is off by
	// default because on veth and tap it measured no faster (see the package
	// doc) and operators debug ports with tcpdump.
	QdiscBypass bool
}

func (o *Options) setDefaults() {
	if o.BlockSize <= 0 {
		o.BlockSize = 128 << 10
	}
	if o.NumBlocks <= 0 {
		o.NumBlocks = 32
	}
	if o.FrameSize <= 0 {
		o.FrameSize = 2048
	}
	if o.BlockTimeout <= 0 {
		o.BlockTimeout = time.Millisecond
	}
}

func (o *Options) validate() error {
	page := os.Getpagesize()
	switch {
	case o.BlockSize%page != 0:
		return fmt.Errorf("block size %d is not a multiple of the page size %d", o.BlockSize, page)
	case o.FrameSize%unix.TPACKET_ALIGNMENT != 0 || o.FrameSize < minFrameSize:
		return fmt.Errorf("frame size %d must be a multiple of %d and at least %d",
			o.FrameSize, unix.TPACKET_ALIGNMENT, minFrameSize)
	case o.BlockSize%o.FrameSize != 0:
		return fmt.Errorf("block size %d is not a multiple of frame size %d", o.BlockSize, o.FrameSize)
	case o.BlockTimeout.Milliseconds() > int64(^uint32(0)):
		return fmt.Errorf("block timeout %v too large", o.BlockTimeout)
	}
	return nil
}

// Stats is a snapshot of a Port's counters, all totals since Open.
type Stats struct {
	RxPackets   uint64 // frames handed to the caller
	RxDrops     uint64 // frames the kernel dropped because the ring was full (tp_drops)
	RxFreezes   uint64 // times the ring filled up and froze (tp_freeze_q_cnt)
	RxTruncated uint64 // frames dropped because they did not fit a ring block or the caller's buffer
	TxPackets   uint64 // frames the kernel accepted for transmission
	TxErrors    uint64 // frames rejected: malformed, over the MTU, or dropped by the device
}

// counters are updated by the RX/TX paths and read by Stats without locks.
type counters struct {
	rxPackets, rxDrops, rxFreezes, rxTruncated atomic.Uint64
	txPackets, txErrors                        atomic.Uint64
}

// Port is an AF_PACKET socket bound to one interface, with a TPACKET_V3
// receive ring and batched transmit.
//
// One goroutine may receive (ReadBatch or Recv) while another sends
// (WriteBatch); concurrent receivers, or concurrent senders, are serialised.
// Stats and Close may be called from any goroutine.
type Port struct {
	name    string
	ifindex int
	fd      int // the AF_PACKET socket; -1 once closed
	efd     int // eventfd that Close signals to wake blocked poll calls
	mem     []byte
	closed  atomic.Bool
	cnt     counters
	pollTO  time.Duration
	closeMu sync.Mutex // serialises Close calls

	rxMu  sync.Mutex
	rx    rxRing
	rxPfd [2]unix.PollFd
	rxTS  unix.Timespec // kept in the Port so ppoll's argument does not escape per call

	txMu sync.Mutex
	tx   txState

	// kmu guards fd against Close while PACKET_STATISTICS is read; the
	// kernel resets those counters on every read, so each read is added to
	// cnt exactly once.
	kmu    sync.Mutex
	kst    unix.TpacketStatsV3
	kstLen uint32
}

// Open creates a Port on interface ifname in the calling thread's network
// namespace.
func Open(ifname string, opts Options) (*Port, error) {
	opts.setDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("afpacket: open %s: %w", ifname, err)
	}
	p, err := open(ifname, opts)
	if err != nil {
		return nil, fmt.Errorf("afpacket: open %s: %w", ifname, err)
	}
	return p, nil
}

func open(ifname string, opts Options) (_ *Port, err error) {
	// Protocol 0: the socket receives nothing until bind, so frames from other
	// interfaces never enter the ring in the window before bind.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_PACKET): %w", err)
	}
	p := &Port{name: ifname, fd: fd, efd: -1, pollTO: opts.PollTimeout}
	defer func() {
		if err != nil {
			p.release()
		}
	}()

	ifr, err := unix.NewIfreq(ifname)
	if err != nil {
		return nil, err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFINDEX, ifr); err != nil {
		return nil, fmt.Errorf("interface not found in this network namespace: %w", err)
	}
	p.ifindex = int(ifr.Uint32())

	if p.efd, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("set TPACKET_V3 (needs Linux >= 3.2): %w", err)
	}
	// Our own transmissions (and anything else the host sends out of this
	// interface, which is traffic towards the VM) must not loop back into
	// the datapath. Linux >= 4.20; older kernels are covered by the
	// pkttype check in the RX path.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil &&
		!errors.Is(err, unix.ENOPROTOOPT) {
		return nil, fmt.Errorf("set PACKET_IGNORE_OUTGOING: %w", err)
	}
	if opts.QdiscBypass {
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1); err != nil {
			return nil, fmt.Errorf("set PACKET_QDISC_BYPASS: %w", err)
		}
	}
	req := unix.TpacketReq3{
		Block_size:     uint32(opts.BlockSize),
		Block_nr:       uint32(opts.NumBlocks),
		Frame_size:     uint32(opts.FrameSize),
		Frame_nr:       uint32(opts.BlockSize / opts.FrameSize * opts.NumBlocks),
		Retire_blk_tov: uint32(max(1, opts.BlockTimeout.Milliseconds())),
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("set PACKET_RX_RING (%d blocks of %d bytes): %w", opts.NumBlocks, opts.BlockSize, err)
	}
	rxLen := opts.BlockSize * opts.NumBlocks
	p.mem, err = unix.Mmap(fd, 0, rxLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap ring: %w", err)
	}
	p.rx.init(p.mem[:rxLen], opts.BlockSize, opts.NumBlocks)
	p.tx.init()

	if !opts.NoPromisc {
		mreq := unix.PacketMreq{Ifindex: int32(p.ifindex), Type: unix.PACKET_MR_PROMISC}
		// Membership is reference counted by the kernel and dropped when the
		// socket closes, so a crashed agent does not leave promisc on.
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mreq); err != nil {
			return nil, fmt.Errorf("enable promiscuous mode: %w", err)
		}
	}
	sll := unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: p.ifindex}
	if err := unix.Bind(fd, &sll); err != nil {
		return nil, fmt.Errorf("bind: %w", err)
	}
	p.rxPfd = [2]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(p.efd), Events: unix.POLLIN}}
	p.kstLen = unix.SizeofTpacketStatsV3
	return p, nil
}

// OpenInNetns is Open for an interface inside another network namespace,
// given by path (/run/netns/NAME or /proc/PID/ns/net). The socket stays in
// that namespace for its whole life; the calling goroutine's namespace is not
// changed.
func OpenInNetns(nsPath, ifname string, opts Options) (*Port, error) {
	var p *Port
	var openErr error
	err := netns.DoPath(nsPath, func() error {
		p, openErr = Open(ifname, opts)
		return nil
	})
	if err != nil {
		if p != nil {
			p.Close() // opened, but the thread could not switch back
		}
		return nil, fmt.Errorf("afpacket: open %s: %w", ifname, err)
	}
	if openErr != nil {
		return nil, fmt.Errorf("in netns %s: %w", nsPath, openErr)
	}
	return p, nil
}

// Name returns the interface name the port was opened on.
func (p *Port) Name() string { return p.name }

// Ifindex returns the interface index, in the port's network namespace.
func (p *Port) Ifindex() int { return p.ifindex }

// Stats returns the port's counters. The counters are atomics that the
// receive and send paths update without locks; Stats only takes a short lock,
// shared with Close, to fold in the kernel's latest drop counts first.
func (p *Port) Stats() Stats {
	p.syncKernelStats()
	return Stats{
		RxPackets:   p.cnt.rxPackets.Load(),
		RxDrops:     p.cnt.rxDrops.Load(),
		RxFreezes:   p.cnt.rxFreezes.Load(),
		RxTruncated: p.cnt.rxTruncated.Load(),
		TxPackets:   p.cnt.txPackets.Load(),
		TxErrors:    p.cnt.txErrors.Load(),
	}
}

// syncKernelStats folds PACKET_STATISTICS into the counters. It is called
// by Stats, by Close, and by the receiver each time before it sleeps, so drop
// counts stay current even if nobody calls Stats. It does not allocate.
func (p *Port) syncKernelStats() {
	p.kmu.Lock()
	defer p.kmu.Unlock()
	if p.fd < 0 {
		return
	}
	p.kstLen = unix.SizeofTpacketStatsV3
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(p.fd), unix.SOL_PACKET, unix.PACKET_STATISTICS,
		uintptr(unsafe.Pointer(&p.kst)), uintptr(unsafe.Pointer(&p.kstLen)), 0)
	if e != 0 {
		return // only fails on a bad fd, which kmu rules out
	}
	p.cnt.rxDrops.Add(uint64(p.kst.Drops))
	p.cnt.rxFreezes.Add(uint64(p.kst.Freeze_q_cnt))
}

// Close wakes any blocked ReadBatch, Recv or WriteBatch (they return
// ErrClosed), waits for them to return, and releases the socket and ring.
// It must not be called from inside a Recv callback.
func (p *Port) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed.Swap(true) {
		return nil
	}
	// Wake pollers. EAGAIN means the counter is already non-zero: awake.
	one := [8]byte{1}
	if _, err := unix.Write(p.efd, one[:]); err != nil && err != unix.EAGAIN {
		return fmt.Errorf("afpacket: close %s: wake blocked readers: %w", p.name, err)
	}
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	p.txMu.Lock()
	defer p.txMu.Unlock()
	p.syncKernelStats()
	return p.release()
}

// release unmaps the ring and closes descriptors; callers hold every lock,
// or own p exclusively (failed Open).
func (p *Port) release() error {
	var errs []error
	if p.mem != nil {
		errs = append(errs, unix.Munmap(p.mem))
		p.mem = nil
	}
	p.kmu.Lock()
	if p.fd >= 0 {
		errs = append(errs, unix.Close(p.fd))
		p.fd = -1
	}
	p.kmu.Unlock()
	if p.efd >= 0 {
		errs = append(errs, unix.Close(p.efd))
		p.efd = -1
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("afpacket: close %s: %w", p.name, err)
	}
	return nil
}

// wait blocks in ppoll until fd reports events, Close signals, or the
// deadline (zero: none) passes. It never allocates.
func (p *Port) wait(pfd *[2]unix.PollFd, ts *unix.Timespec, deadline time.Time) error {
	for {
		if p.closed.Load() {
			return ErrClosed
		}
		var tsp *unix.Timespec
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return ErrTimeout
			}
			*ts = unix.NsecToTimespec(int64(left))
			tsp = ts
		}
		pfd[0].Revents, pfd[1].Revents = 0, 0
		n, err := unix.Ppoll(pfd[:], tsp, nil)
		switch {
		case err == unix.EINTR:
			continue // Go's preemption signals interrupt ppoll routinely
		case err != nil:
			return fmt.Errorf("afpacket: poll %s: %w", p.name, err)
		case n == 0:
			continue // deadline check at the top
		case pfd[1].Revents != 0:
			return ErrClosed
		case pfd[0].Revents&(unix.POLLERR|unix.POLLHUP|unix.POLLNVAL) != 0:
			return p.sockError()
		default:
			return nil
		}
	}
}

// sockError reads (and so clears) the socket's pending error. The kernel
// sets ENETDOWN when the interface goes down or is deleted; a port on an
// interface that comes back up resumes by itself.
func (p *Port) sockError() error {
	soerr, err := unix.GetsockoptInt(p.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("afpacket: %s: read socket error: %w", p.name, err)
	}
	if soerr == 0 {
		return nil
	}
	return fmt.Errorf("afpacket: %s: %w", p.name, unix.Errno(soerr))
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
