package memory

import (
	"net/netip"
	"sync"

	"github.com/nagare/nagare/pkg/packet"
)

// headroom is the space kept in front of a frame for pushed VLAN tags.
const headroom = 64

// queueLen bounds every queue of frames: an interface's two directions and
// a tunnel endpoint. A full queue drops, as a full ring or socket buffer
// does.
const queueLen = 1024

// frame is one frame (or tunnel datagram) in flight between goroutines,
// in a buffer with headroom. Frames are pooled: the hit path takes one per
// output and gives the received one back.
type frame struct {
	buf        []byte
	start, end int
	// For a tunnel datagram: who sent it, and how.
	src  netip.Addr
	kind packet.Tunnel
	port uint16
}

var framePool = sync.Pool{New: func() any { return &frame{buf: make([]byte, 2048)} }}

// newFrame returns a pooled frame holding parts, concatenated.
func newFrame(parts ...[]byte) *frame {
	f := framePool.Get().(*frame)
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if cap(f.buf) < headroom+n {
		f.buf = make([]byte, headroom+n+512) // a jumbo frame: rare
	}
	f.buf = f.buf[:cap(f.buf)]
	f.start, f.end = headroom, headroom
	for _, p := range parts {
		f.end += copy(f.buf[f.end:], p)
	}
	f.src, f.kind, f.port = netip.Addr{}, packet.TunnelNone, 0
	return f
}

func (f *frame) bytes() []byte { return f.buf[f.start:f.end] }

func (f *frame) free() { framePool.Put(f) }

// push queues f on q, or frees it and reports false when q is full.
func push(q chan *frame, f *frame) bool {
	select {
	case q <- f:
		return true
	default:
		f.free()
		return false
	}
}
