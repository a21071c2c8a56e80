#!/usr/bin/env bash
# make bench: every benchmark, side by side with the kernel where there is a
# kernel equivalent. Prints tables; numbers go into the README by hand.
#
# The datapath table needs root (network namespaces) and the kernel baseline
# harness in ../shared/baseline; it takes about 20 minutes on a quiet
# machine. Extra flags for it: NAGARE_BENCH_DATAPATH="--cases bridge --reps 1".
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== control plane (nagare-bench api)"
./bin/nagare-bench api
echo
echo "== Neutron API (nagare-bench neutron)"
./bin/nagare-bench neutron
echo
echo "== datapath: Nagare and the Linux kernel side by side (nagare-bench datapath)"
if [ "$(id -u)" -eq 0 ]; then
	# shellcheck disable=SC2086 # word splitting of the extra flags is wanted
	./bin/nagare-bench datapath ${NAGARE_BENCH_DATAPATH:-}
else
	echo "skipped: needs root (it builds network namespaces); run: sudo make bench"
fi
echo
echo "== Go micro-benchmarks"
go test -run='^$' -bench=. -benchmem -benchtime=1s ./pkg/model/ ./pkg/packet/ ./pkg/sim/ 2>/dev/null | grep -E '^(Benchmark|ok|PASS)' || true
