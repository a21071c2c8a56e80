#!/usr/bin/env bash
# make bench: every benchmark, side by side with the kernel where there is a
# kernel equivalent. Prints tables; numbers go into the README by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== control plane (nagare-bench api)"
./bin/nagare-bench api
echo
echo "== Go micro-benchmarks"
go test -run='^$' -bench=. -benchmem -benchtime=1s ./pkg/model/ ./pkg/packet/ ./pkg/sim/ 2>/dev/null | grep -E '^(Benchmark|ok|PASS)' || true
