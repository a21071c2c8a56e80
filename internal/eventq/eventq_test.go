package eventq

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestQueue(t *testing.T) {
	q := New[int]()
	q.Push(1)
	q.Push(2)
	ctx := context.Background()
	if vs, err := q.Take(ctx); err != nil || !slices.Equal(vs, []int{1, 2}) {
		t.Fatalf("Take = %v, %v", vs, err)
	}
	got := make(chan []int)
	go func() {
		vs, _ := q.Take(ctx)
		got <- vs
	}()
	time.Sleep(10 * time.Millisecond) // Take is waiting
	q.Push(3)
	if vs := <-got; !slices.Equal(vs, []int{3}) {
		t.Fatalf("a waiting Take got %v", vs)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := q.Take(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Take after cancel: %v", err)
	}
}
