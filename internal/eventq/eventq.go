// Package eventq is an unbounded queue of events from producers that must
// never block (a lock holder announcing a change) to one consumer
// goroutine. Unbounded is right where events are rare and a slow
// consumer must not stall the producer: link changes, a test's watch.
package eventq

import (
	"context"
	"sync"
)

// Queue is a queue of events; the zero value is not ready: use New.
type Queue[T any] struct {
	mu      sync.Mutex
	pending []T
	wake    chan struct{}
}

// New returns an empty queue.
func New[T any]() *Queue[T] { return &Queue[T]{wake: make(chan struct{}, 1)} }

// Push queues v; it never blocks.
func (q *Queue[T]) Push(v T) {
	q.mu.Lock()
	q.pending = append(q.pending, v)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Take returns every queued event, in order, waiting for one if there is
// none, until ctx is done (then it returns ctx's error).
func (q *Queue[T]) Take(ctx context.Context) ([]T, error) {
	for {
		q.mu.Lock()
		vs := q.pending
		q.pending = nil
		q.mu.Unlock()
		if len(vs) > 0 {
			return vs, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-q.wake:
		}
	}
}
