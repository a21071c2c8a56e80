//go:build linux

package ebpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nagare/nagare/pkg/datapath"
)

// Batching the upcall path. A port's miss goroutine takes the upcalls
// waiting for it (up to missBatch) in one go, and while it handles them
// the kernel writes that Install and Execute would make one system call
// each are queued instead: at the end of the batch, one BPF_MAP_UPDATE_BATCH
// writes every new flow, another every exec slot, and one sendmmsg sends
// every executed frame, in the order they were executed. A flow, a frame,
// takes microseconds more to reach the kernel; the agent's time per new
// flow is a fraction of what a system call per write costs.
//
// Each port's miss goroutine batches for its port: a flow entering by the
// port, a frame executed for a packet that entered by it (Install's
// Key.InPort, Execute's inPort), are queued while the port's batch runs,
// whoever calls; the end of the batch flushes them. A miss stuck on one
// port so holds back only that port's writes. Outside batches, and for
// generated packets, Install and Execute write at once.

const (
	// missBatch is how many upcalls a miss goroutine takes in one go.
	missBatch = 64
	// maxQueuedOutputs bounds the frames a port queues before a flush:
	// with a few ports batching at once, well under the exec slots, so
	// that no queued frame's slot is reused before it is sent.
	maxQueuedOutputs = 256
)

// pendingInstall is a flow whose kernel entry is queued.
type pendingInstall struct {
	r       *flowRec
	val     flowValue
	oldList uint32 // the replaced flow's action list, released once r is written
}

// flushBufs are flushInstalls' buffers, reused from one batch to the
// next; guarded by Datapath.mu.
type flushBufs struct {
	keys []kernelKey
	vals []flowValue
	live []*flowRec
}

// batcher queues a port's kernel writes while its batch runs.
type batcher struct {
	mu       sync.Mutex
	active   bool
	installs []pendingInstall
	// Queued outputs: exec slots and their frames, in execution order;
	// frames live in arena.
	slotIdx  []uint32
	slotVals []execSlot
	frames   [][2]int // [start, end) in arena
	marks    []uint32
	arena    []byte
	// flushing buffers, swapped with the queues so that a flush does not
	// hold mu while it makes system calls.
	spare batchQueues
}

type batchQueues struct {
	installs []pendingInstall
	slotIdx  []uint32
	slotVals []execSlot
	frames   [][2]int
	marks    []uint32
	arena    []byte
}

// beginBatch starts p's batch: its writes queue until endBatch.
func (dp *Datapath) beginBatch(p *port) {
	b := &p.batch
	b.mu.Lock()
	b.active = true
	b.mu.Unlock()
}

// endBatch ends p's batch and flushes its queues.
func (dp *Datapath) endBatch(p *port) {
	b := &p.batch
	b.mu.Lock()
	b.active = false
	q := b.take()
	b.mu.Unlock()
	dp.flush(q)
	b.mu.Lock()
	b.spare = q
	b.mu.Unlock()
}

// take swaps the queues for the spare buffers; b.mu is held.
func (b *batcher) take() batchQueues {
	q := batchQueues{installs: b.installs, slotIdx: b.slotIdx, slotVals: b.slotVals, frames: b.frames, marks: b.marks, arena: b.arena}
	s := b.spare
	b.installs, b.slotIdx, b.slotVals, b.frames, b.marks, b.arena = s.installs[:0], s.slotIdx[:0], s.slotVals[:0], s.frames[:0], s.marks[:0], s.arena[:0]
	b.spare = batchQueues{}
	return q
}

// queueInstall queues a flow's kernel write if its in-port's batch runs,
// and reports whether it did; Datapath.mu is held.
func (dp *Datapath) queueInstall(r *flowRec, val *flowValue, oldList uint32) bool {
	if r.in == nil {
		return false
	}
	b := &r.in.batch
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.active {
		return false
	}
	b.installs = append(b.installs, pendingInstall{r: r, val: *val, oldList: oldList})
	return true
}

// queueOutput queues one output of an Execute if the batch of in, the
// port the packet entered by, runs (and there is room), and reports
// whether it did.
func (dp *Datapath) queueOutput(in *port, frame []byte, act *kernelAction) bool {
	if in == nil {
		return false
	}
	b := &in.batch
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.active || len(b.frames) >= maxQueuedOutputs {
		return false
	}
	seq := dp.inj.nextSeq()
	b.slotIdx = append(b.slotIdx, seq%execSlots)
	b.slotVals = append(b.slotVals, execSlot{Seq: seq / execSlots, Act: *act})
	b.marks = append(b.marks, seq)
	start := len(b.arena)
	b.arena = append(b.arena, frame...)
	b.frames = append(b.frames, [2]int{start, len(b.arena)})
	return true
}

// flush writes what a batch queued: the flows, then the exec slots, then
// the frames.
func (dp *Datapath) flush(q batchQueues) {
	if len(q.installs) > 0 {
		dp.flushInstalls(q.installs)
	}
	if len(q.frames) > 0 {
		if err := dp.flushOutputs(&q); err != nil && !dp.isClosed() {
			dp.log.Debug("datapath: send executed frames", "err", err)
		}
	}
}

// flushInstalls writes the queued flows that are still current (one
// removed or replaced meanwhile is not written), in one system call.
func (dp *Datapath) flushInstalls(items []pendingInstall) {
	dp.mu.Lock()
	defer dp.mu.Unlock()
	if dp.closed {
		return
	}
	f := &dp.flushing
	keys, vals, live := f.keys[:0], f.vals[:0], f.live[:0]
	defer func() {
		clear(live) // no flow kept alive by the buffer
		f.keys, f.vals, f.live = keys[:0], vals[:0], live[:0]
	}()
	for i := range items {
		it := &items[i]
		if dp.table.recs[it.r.key] != it.r {
			continue
		}
		keys = append(keys, *toKernelKey(&it.r.key))
		vals = append(vals, it.val)
		live = append(live, it.r)
	}
	if len(keys) > 0 {
		n, err := dp.objs.Flows.BatchUpdate(keys, vals, nil)
		if err != nil {
			// The ones not written are not installed.
			dp.log.Warn("datapath: write flows", "written", n, "of", len(keys), "err", err)
			for _, r := range live[n:] {
				dp.table.unlink(r)
				dp.lists.put(r.list)
			}
		}
	}
	for i := range items {
		dp.lists.put(items[i].oldList)
	}
}

// flushOutputs writes the exec slots of the queued frames and sends them
// with one sendmmsg.
func (dp *Datapath) flushOutputs(q *batchQueues) error {
	if _, err := dp.objs.ExecSlots.BatchUpdate(q.slotIdx, q.slotVals, nil); err != nil {
		dp.drops.add(datapath.DropTxError, uint64(len(q.frames)))
		return fmt.Errorf("write exec slots: %w", err)
	}
	return dp.inj.sendBatch(q.arena, q.frames, q.marks, &dp.drops)
}

// sendBatch sends frames (ranges of arena) with their marks in one
// sendmmsg, counting the ones the kernel refused.
func (inj *injector) sendBatch(arena []byte, frames [][2]int, marks []uint32, drops *dropCounters) error {
	inj.txMu.Lock()
	defer inj.txMu.Unlock()
	n := len(frames)
	if cap(inj.msgs) < n {
		inj.msgs = make([]unix.Mmsghdr, n)
		inj.iovs = make([]unix.Iovec, n)
		inj.oobs = make([]byte, n*oobLen)
	}
	msgs, iovs, oobs := inj.msgs[:n], inj.iovs[:n], inj.oobs[:n*oobLen]
	for i, f := range frames {
		iovs[i].Base = &arena[f[0]]
		iovs[i].SetLen(f[1] - f[0])
		oob := oobs[i*oobLen : (i+1)*oobLen]
		putMark(oob, marks[i])
		msgs[i] = unix.Mmsghdr{}
		msgs[i].Hdr.Iov = &iovs[i]
		msgs[i].Hdr.SetIovlen(1)
		msgs[i].Hdr.Control = &oob[0]
		msgs[i].Hdr.SetControllen(oobLen)
	}
	defer clear(iovs) // no reference to the arena stays behind
	var errs []error
	for j := 0; j < n; {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(inj.fd), uintptr(unsafe.Pointer(&msgs[j])), uintptr(n-j), 0, 0, 0)
		switch e {
		case 0:
			j += int(r)
		case unix.EINTR:
		default:
			// This frame only (too long, no buffer): the rest go on.
			drops.add(datapath.DropTxError, 1)
			if len(errs) == 0 {
				errs = append(errs, fmt.Errorf("inject: %w", e))
			}
			j++
		}
	}
	return errors.Join(errs...)
}

// oobLen is the control message that carries a frame's mark.
var oobLen = unix.CmsgSpace(4)

func putMark(oob []byte, mark uint32) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SO_MARK
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(oob[unix.CmsgLen(0):], mark)
}
