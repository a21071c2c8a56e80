// Package backoff is how Nagare waits between retries: full-jitter
// exponential waits that end early when the caller's context does, so a
// retry loop never outlives the goroutine's owner.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Jitter returns a random wait of up to base·2^attempt, capped at max
// (AWS's "full jitter"), plus a millisecond: writers that collided do not
// collide again in lockstep, and a wait is never zero.
func Jitter(attempt int, base, max time.Duration) time.Duration {
	d := max
	if attempt < 20 && base<<attempt < max {
		d = base << attempt
	}
	return rand.N(d) + time.Millisecond
}

// Sleep waits d, or until ctx is done, in which case it returns ctx's
// error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Policy is a retry schedule: waits grow from Base to Max.
type Policy struct {
	Base, Max time.Duration
}

// Retry calls fn until it returns nil or ctx is done, waiting
// Jitter(attempt, Base, Max) after each failure. failed, if not nil, is
// told of every failure (for a log line). Retry returns nil once fn
// succeeded, or ctx's error.
func (p Policy) Retry(ctx context.Context, fn func(context.Context) error, failed func(attempt int, err error)) error {
	for attempt := 1; ; attempt++ {
		err := fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if failed != nil {
			failed(attempt, err)
		}
		if err := Sleep(ctx, Jitter(min(attempt, 10), p.Base, p.Max)); err != nil {
			return err
		}
	}
}
