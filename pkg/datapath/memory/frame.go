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

// fifo is a bounded queue of frames whose memory follows what it holds.
// A channel of queueLen would hold 8 KB per queue from the start, and the
// interfaces of simulated hypervisors (thousands in one process) are
// nearly always empty. Readers wait on ready, then take at most a
// queue's worth of frames with pop and call rearm, so a sender faster than
// the reader cannot keep it from noticing that it should stop.
type fifo struct {
	mu    sync.Mutex
	q     []*frame
	head  int
	ready chan struct{} // a token when frames may be waiting
}

func newFIFO() *fifo { return &fifo{ready: make(chan struct{}, 1)} }

// push queues fr, or frees it and reports false when the queue is full.
func (q *fifo) push(fr *frame) bool {
	q.mu.Lock()
	if len(q.q)-q.head >= queueLen {
		q.mu.Unlock()
		fr.free()
		return false
	}
	if q.head > 0 && len(q.q) == cap(q.q) { // slide down rather than grow
		n := copy(q.q, q.q[q.head:])
		clear(q.q[n:])
		q.q, q.head = q.q[:n], 0
	}
	q.q = append(q.q, fr)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// pop takes the oldest frame; nil when there is none.
func (q *fifo) pop() *frame {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.head == len(q.q) {
		return nil
	}
	fr := q.q[q.head]
	q.q[q.head] = nil
	q.head++
	if q.head == len(q.q) {
		q.q, q.head = q.q[:0], 0
	}
	return fr
}

// rearm gives the ready token back when frames are still waiting (a
// reader stopped taking them before the queue was empty).
func (q *fifo) rearm() {
	q.mu.Lock()
	pending := q.head < len(q.q)
	q.mu.Unlock()
	if pending {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
}
