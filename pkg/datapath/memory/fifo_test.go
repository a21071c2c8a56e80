package memory

import "testing"

// TestFIFO: frames come out in the order they went in, across the
// slide-down that reuses the slice; a full queue refuses (and frees) the
// frame; ready holds a token while frames wait.
func TestFIFO(t *testing.T) {
	q := newFIFO()
	next, want := 0, 0
	push := func(n int) {
		for range n {
			if !q.push(newFrame([]byte{byte(next), byte(next >> 8)})) {
				t.Fatalf("push %d refused with %d queued", next, next-want)
			}
			next++
		}
	}
	pop := func(n int) {
		for range n {
			f := q.pop()
			if f == nil {
				t.Fatalf("pop %d: empty", want)
			}
			if b := f.bytes(); int(b[0])|int(b[1])<<8 != want&0xffff {
				t.Fatalf("pop: frame %d, want %d", int(b[0])|int(b[1])<<8, want)
			}
			f.free()
			want++
		}
	}
	push(3)
	select {
	case <-q.ready:
	default:
		t.Fatal("no ready token after a push")
	}
	pop(2)
	push(queueLen - 1) // full: the slide-down moves the one left to the front
	if q.push(newFrame([]byte{0})) {
		t.Fatal("push accepted beyond queueLen")
	}
	pop(queueLen - 10)
	q.rearm()
	select {
	case <-q.ready:
	default:
		t.Fatal("rearm with frames waiting gave no token")
	}
	push(500)
	pop(510)
	if f := q.pop(); f != nil {
		t.Fatal("pop from an empty queue returned a frame")
	}
	<-q.ready // the pushes' token
	q.rearm()
	select {
	case <-q.ready:
		t.Fatal("rearm of an empty queue gave a token")
	default:
	}
}
