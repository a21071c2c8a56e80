package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestJitterBounds(t *testing.T) {
	for attempt := range 30 {
		for range 50 {
			d := Jitter(attempt, time.Millisecond, 100*time.Millisecond)
			limit := min(time.Millisecond<<min(attempt, 20), 100*time.Millisecond) + time.Millisecond
			if d < time.Millisecond || d > limit {
				t.Fatalf("attempt %d: wait %v outside [1ms, %v]", attempt, d, limit)
			}
		}
	}
}

// A cancelled context ends Sleep and Retry at once, with its error.
func TestCancelEndsWaits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep after cancel: %v", err)
	}
	calls := 0
	err := Policy{Base: time.Hour, Max: time.Hour}.Retry(ctx, func(context.Context) error { calls++; return errors.New("no") }, nil)
	if !errors.Is(err, context.Canceled) || calls != 1 {
		t.Fatalf("Retry after cancel: %v after %d calls", err, calls)
	}
}

func TestRetryUntilSuccess(t *testing.T) {
	var failures []int
	calls := 0
	err := Policy{Base: time.Microsecond, Max: time.Millisecond}.Retry(context.Background(), func(context.Context) error {
		calls++
		if calls < 4 {
			return errors.New("not yet")
		}
		return nil
	}, func(attempt int, err error) { failures = append(failures, attempt) })
	if err != nil || calls != 4 || len(failures) != 3 || failures[2] != 3 {
		t.Fatalf("Retry: err %v, %d calls, failures %v", err, calls, failures)
	}
}
