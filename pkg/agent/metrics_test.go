package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The metrics listener serves Go's profiles only when asked (--pprof).
func TestMetricsPprof(t *testing.T) {
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint("pprof=", on), func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			reg := prometheus.NewRegistry()
			reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "nagare_test_total", Help: "test"}))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- serveMetrics(ctx, addr, reg, on) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			})
			get := func(path string) (string, string) {
				t.Helper()
				var resp *http.Response
				for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
					if resp, err = http.Get("http://" + addr + path); err == nil || time.Now().After(deadline) {
						break
					}
				}
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %d, %v", path, resp.StatusCode, err)
				}
				return resp.Header.Get("Content-Type"), string(b)
			}
			if _, body := get("/metrics"); !strings.Contains(body, "nagare_test_total") {
				t.Fatalf("/metrics lacks the registered counter:\n%s", body)
			}
			ct, body := get("/debug/pprof/heap")
			isProfile := ct == "application/octet-stream" && !strings.Contains(body, "nagare_test_total")
			if isProfile != on {
				t.Fatalf("pprof %v: /debug/pprof/heap answered %q (a profile: %v)", on, ct, isProfile)
			}
		})
	}
}
