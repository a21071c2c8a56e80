package nsdb

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nagare/nagare/pkg/model"
	"github.com/nagare/nagare/pkg/nsdb/nsdbtest"
)

// BenchmarkCreatePort measures port creation (validation, tunnel key
// allocation, reference and unique bookkeeping, one etcd transaction) by 1,
// 8 and 64 concurrent callers sharing one client, against an embedded etcd
// with fsync on, as in production. The callers are goroutines of our own
// rather than RunParallel's, whose count is a multiple of GOMAXPROCS and
// cannot be exactly 1.
func BenchmarkCreatePort(b *testing.B) {
	cli := nsdbtest.StartWith(b, nsdbtest.Options{Fsync: true})
	s := New(cli)
	ctx := context.Background()
	if err := s.Init(ctx); err != nil {
		b.Fatal(err)
	}
	br, err := s.Create(ctx, &model.Bridge{Name: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	for _, clients := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			rate := concurrently(b, clients, func() error {
				_, err := s.Create(ctx, &model.Port{BridgeID: br.GetMeta().ID})
				return err
			})
			b.ReportMetric(rate, "creates/s")
			b.ReportMetric(float64(retries.Swap(0))/float64(b.N), "retries/op")
		})
	}
}

// BenchmarkEtcdPut is the baseline for BenchmarkCreatePort: plain puts of
// one key by as many callers on the same kind of etcd. Disks differ wildly
// in fsync latency; the ratio between the two is what carries over.
func BenchmarkEtcdPut(b *testing.B) {
	cli := nsdbtest.StartWith(b, nsdbtest.Options{Fsync: true})
	var n atomic.Int64
	for _, clients := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			rate := concurrently(b, clients, func() error {
				_, err := cli.Put(context.Background(), fmt.Sprintf("/bench/%d", n.Add(1)), "v")
				return err
			})
			b.ReportMetric(rate, "puts/s")
		})
	}
}

// concurrently runs op b.N times from the given number of goroutines and
// returns the rate in operations per second.
func concurrently(b *testing.B, clients int, op func() error) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				if err := op(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(b.N) / time.Since(start).Seconds()
}

// BenchmarkList10kPorts lists 10,000 ports (all of the kind), and the 10
// ports of a small bridge among them (through the reverse index).
func BenchmarkList10kPorts(b *testing.B) {
	f := newFixture(b)
	big, small := f.bridge("big"), f.bridge("small")
	fill(b, f.s, big.ID, 10000-10)
	fill(b, f.s, small.ID, 10)

	b.Run("all", func(b *testing.B) {
		for b.Loop() {
			ports, _, err := f.s.List(f.ctx, model.PortKind, "", "")
			if err != nil || len(ports) != 10000 {
				b.Fatalf("listed %d ports: %v", len(ports), err)
			}
		}
	})
	b.Run("of-small-bridge", func(b *testing.B) {
		for b.Loop() {
			ports, _, err := f.s.List(f.ctx, model.PortKind, "bridge_id", small.ID)
			if err != nil || len(ports) != 10 {
				b.Fatalf("listed %d ports: %v", len(ports), err)
			}
		}
	})
}

// fill creates n ports on a bridge, many per transaction and several
// transactions at a time, so setting up 10,000 takes seconds.
func fill(b testing.TB, s *Store, bridgeID string, n int) {
	const perTx, workers = 100, 8
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				lo := int(next.Add(perTx)) - perTx
				if lo >= n {
					return
				}
				_, err := s.Update(context.Background(), func(tx *Tx) error {
					for range min(perTx, n-lo) {
						if _, err := tx.Create(&model.Port{BridgeID: bridgeID}); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}
