//go:build linux

package afpacket

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/netns"
	"github.com/nagare/nagare/pkg/offload"
)

// Errors returned by Port methods.
var (
	// ErrClosed is returned by ReadBatch, Receive, WriteBatch and Write once Close has
	// been called, including to calls that were blocked when Close ran.
	ErrClosed = errors.New("afpacket: port closed")
	// ErrTimeout is returned by ReadBatch and Receive when Options.PollTimeout
	// elapsed with no frame to return. The port stays usable.
	ErrTimeout = errors.New("afpacket: receive timed out")
)

// Options tunes a Port. The zero value gives the defaults, which suit a
// 1500-byte MTU: 2048 ring slots of 2 KiB (4 MiB per port), which absorb a
// stalled reader for 2048 frames before the kernel drops.
type Options struct {
	// FrameSize is the size of one RX ring slot (default 2048, a multiple
	// of 16). A frame longer than a slot is read through the socket's
	// queue instead (slower, but nothing is lost); FrameSizeFor(mtu) gives
	// the size that keeps an interface's ordinary frames in the ring.
	FrameSize int
	// NumFrames is the number of RX ring slots (default 2048). When all
	// are full the kernel drops frames and counts them in RxDrops.
	NumFrames int
	// VnetHdr turns on PACKET_VNET_HDR: Receive reports each frame's
	// offload state (a partial checksum, GSO) and the Write methods accept
	// one, so that the frames of a stack with checksum offload and TSO/GSO
	// (a VM's virtio-net, a veth's peer) pass through whole.
	VnetHdr bool
	// Moderation is how long a receiver that has just taken a batch of
	// frames sleeps before it looks again, rather than be woken by the
	// kernel for every frame (default 0: not at all). It trades up to that
	// much latency under load for far fewer wakeups; a lone frame (a ping,
	// the first of a burst) is never delayed by it.
	Moderation time.Duration
	// PollTimeout makes ReadBatch and Receive return ErrTimeout when no
	// frame arrived for this long. Zero waits until a frame arrives or Close.
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

// rcvBufSize is the socket receive buffer asked for: it holds the frames
// too long for a ring slot (GSO super-frames) until Receive takes them,
// about a hundred 64 KiB frames.
const rcvBufSize = 8 << 20

func (o *Options) setDefaults() {
	if o.FrameSize <= 0 {
		o.FrameSize = 2048
	}
	if o.NumFrames <= 0 {
		o.NumFrames = 2048
	}
}

// blockSize is the ring block the kernel allocates slots in: the smallest
// multiple of the page size that holds a slot.
func (o *Options) blockSize() int {
	page := os.Getpagesize()
	return (o.FrameSize + page - 1) / page * page
}

func (o *Options) validate() error {
	switch {
	case o.FrameSize%unix.TPACKET_ALIGNMENT != 0 || o.FrameSize < minFrameSize+ethHdrLen+offload.HdrLen:
		return fmt.Errorf("frame size %d must be a multiple of %d and at least %d",
			o.FrameSize, unix.TPACKET_ALIGNMENT, minFrameSize+ethHdrLen+offload.HdrLen)
	case o.FrameSize > 1<<20 || o.NumFrames > 1<<20:
		return fmt.Errorf("ring of %d slots of %d bytes is too large", o.NumFrames, o.FrameSize)
	}
	return nil
}

// Stats is a snapshot of a Port's counters, all totals since Open.
type Stats struct {
	RxPackets   uint64 // frames handed to the caller
	RxDrops     uint64 // frames the kernel dropped because the ring was full (tp_drops)
	RxTruncated uint64 // frames dropped because they did not fit the caller's buffer (or the socket buffer)
	TxPackets   uint64 // frames the kernel accepted for transmission
	TxErrors    uint64 // frames rejected: malformed, over the MTU, or dropped by the device
}

// counters are updated by the RX/TX paths and read by Stats without locks.
type counters struct {
	rxPackets, rxDrops, rxTruncated atomic.Uint64
	txPackets, txErrors             atomic.Uint64
}

// Port is an AF_PACKET socket bound to one interface, with a TPACKET_V2
// receive ring and batched transmit.
//
// One goroutine may receive (ReadBatch or Receive) while another sends
// (WriteBatch or Write); concurrent receivers, or concurrent senders, are
// serialised.
// Stats and Close may be called from any goroutine.
type Port struct {
	name    string
	ifindex int
	fd      int // the AF_PACKET socket; -1 once closed
	// file owns fd once Open succeeds, so that waiting for frames (or for
	// buffer space) parks the goroutine in Go's netpoller rather than an
	// OS thread in poll(2): a thread blocked in a system call keeps its
	// scheduler slot (P) until sysmon takes it back, which with a reader
	// per port and GOMAXPROCS at the core count delayed other goroutines
	// (a tunnel's receiver) by milliseconds.
	file    *os.File
	rc      syscall.RawConn
	mem     []byte
	closed  atomic.Bool
	cnt     counters
	pollTO  time.Duration
	closeMu sync.Mutex // serialises Close calls

	rxMu       sync.Mutex
	rx         rxRing
	rxReady    func(fd uintptr) bool // RawConn.Read callback, bound once so waiting does not allocate
	rxWoken    bool                  // rxReady has been called since the wait began
	rxErr      error                 // a socket error rxReady found
	rxMsg      unix.Msghdr           // recvmsg of frames too long for a slot
	rxIov      [2]unix.Iovec         // their virtio_net_hdr (into rxVnet) and the frame
	rxVnet     [offload.HdrLen]byte
	vnetLen    int // offload.HdrLen with Options.VnetHdr, else 0
	moderation time.Duration
	lastBatch  int // how many frames Receive last returned

	txMu sync.Mutex
	tx   txState

	// kmu guards fd against Close while PACKET_STATISTICS is read; the
	// kernel resets those counters on every read, so each read is added to
	// cnt exactly once.
	kmu    sync.Mutex
	kst    unix.TpacketStats
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
	p := &Port{name: ifname, fd: fd, pollTO: opts.PollTimeout}
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

	// TPACKET_V2, not V3: V3 hands over whole blocks, and a block that does
	// not fill is retired only by a timer of at least 1 ms, which a lone
	// frame then waits for at every hop (package doc, "Latency").
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V2); err != nil {
		return nil, fmt.Errorf("set TPACKET_V2: %w", err)
	}
	if opts.VnetHdr {
		// Before the ring: the kernel refuses it once a ring is set up.
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
			return nil, fmt.Errorf("set PACKET_VNET_HDR: %w", err)
		}
		p.vnetLen = offload.HdrLen
		p.rxIov[0].Base = &p.rxVnet[0]
		p.rxIov[0].SetLen(offload.HdrLen)
	}
	// Frames longer than a slot are queued whole on the socket too.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_COPY_THRESH, 1); err != nil {
		return nil, fmt.Errorf("set PACKET_COPY_THRESH: %w", err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBufSize) != nil {
		// Not root: as much as net.core.rmem_max allows.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBufSize)
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
	bs := opts.blockSize()
	perBlock := bs / opts.FrameSize
	nBlocks := (opts.NumFrames + perBlock - 1) / perBlock
	req := unix.TpacketReq{
		Block_size: uint32(bs),
		Block_nr:   uint32(nBlocks),
		Frame_size: uint32(opts.FrameSize),
		Frame_nr:   uint32(nBlocks * perBlock),
	}
	if err := unix.SetsockoptTpacketReq(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("set PACKET_RX_RING (%d slots of %d bytes): %w", req.Frame_nr, opts.FrameSize, err)
	}
	rxLen := bs * nBlocks
	p.mem, err = unix.Mmap(fd, 0, rxLen, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap ring: %w", err)
	}
	p.rx.init(p.mem[:rxLen], opts.FrameSize, bs, nBlocks*perBlock, opts.VnetHdr)
	p.tx.init(opts.VnetHdr)
	p.moderation = opts.Moderation

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
	p.kstLen = unix.SizeofTpacketStats
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("set non-blocking: %w", err)
	}
	if p.file = os.NewFile(uintptr(fd), "afpacket:"+ifname); p.file == nil {
		return nil, errors.New("wrap the socket in a file")
	}
	if p.rc, err = p.file.SyscallConn(); err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	p.rxReady, p.tx.ready = p.rxIsReady, p.txIsReady
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
	p.kstLen = unix.SizeofTpacketStats
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(p.fd), unix.SOL_PACKET, unix.PACKET_STATISTICS,
		uintptr(unsafe.Pointer(&p.kst)), uintptr(unsafe.Pointer(&p.kstLen)), 0)
	if e != 0 {
		return // only fails on a bad fd, which kmu rules out
	}
	p.cnt.rxDrops.Add(uint64(p.kst.Drops))
}

// Close wakes any blocked receive or send (they return ErrClosed), waits
// for them to return, and releases the socket and ring.
func (p *Port) Close() error {
	p.closeMu.Lock()
	defer p.closeMu.Unlock()
	if p.closed.Swap(true) {
		return nil
	}
	// Wake waiters: a deadline in the past ends their wait, and they see
	// closed.
	if err := p.file.SetDeadline(time.Unix(1, 0)); err != nil {
		return fmt.Errorf("afpacket: close %s: wake blocked readers: %w", p.name, err)
	}
	p.rxMu.Lock()
	defer p.rxMu.Unlock()
	p.txMu.Lock()
	defer p.txMu.Unlock()
	p.syncKernelStats()
	return p.release()
}

// release unmaps the ring and closes the socket; callers hold every lock,
// or own p exclusively (failed Open).
func (p *Port) release() error {
	var errs []error
	if p.mem != nil {
		errs = append(errs, unix.Munmap(p.mem))
		p.mem = nil
	}
	p.kmu.Lock()
	switch {
	case p.file != nil:
		errs = append(errs, p.file.Close())
		p.file = nil
	case p.fd >= 0:
		errs = append(errs, unix.Close(p.fd))
	}
	p.fd = -1
	p.kmu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("afpacket: close %s: %w", p.name, err)
	}
	return nil
}

// waitRX parks until the ring has a frame, the socket reports an error,
// Close is called, or the deadline (zero: none) passes. It never
// allocates.
func (p *Port) waitRX(deadline time.Time) error {
	if p.closed.Load() {
		return ErrClosed
	}
	if !deadline.IsZero() {
		if err := p.file.SetReadDeadline(deadline); err != nil {
			return fmt.Errorf("afpacket: %s: %w", p.name, err)
		}
	}
	p.rxWoken, p.rxErr = false, nil
	err := p.rc.Read(p.rxReady)
	switch {
	case p.closed.Load():
		return ErrClosed
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ErrTimeout
	case err != nil:
		return fmt.Errorf("afpacket: wait on %s: %w", p.name, err)
	}
	return p.rxErr
}

// rxIsReady is waitRX's RawConn.Read callback: ready when the ring has a
// frame. Woken with none (the first call is before any wait), it reads the
// socket's pending error: the kernel sets ENETDOWN when the interface goes
// down or is deleted; a port on an interface that comes back up resumes by
// itself.
func (p *Port) rxIsReady(fd uintptr) bool {
	if p.rx.ready() || p.closed.Load() {
		return true
	}
	if !p.rxWoken {
		p.rxWoken = true
		return false
	}
	soerr, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		p.rxErr = fmt.Errorf("afpacket: %s: read socket error: %w", p.name, err)
	case soerr != 0:
		p.rxErr = fmt.Errorf("afpacket: %s: %w", p.name, unix.Errno(soerr))
	default:
		return false // woken for nothing: wait again
	}
	return true
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
