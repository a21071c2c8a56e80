#!/usr/bin/env bash
# Installs everything Nagare's build, tests, demo and benchmarks need on a
# fresh Debian machine. Idempotent: installs only what is missing.
set -euo pipefail

PKGS=(
	etcd-server etcd-client            # external-etcd mode tests (etcd, etcdctl)
	iproute2 iputils-ping              # namespaces, veth, ping
	iperf3 tcpdump tshark              # traffic and captures in end-to-end tests
	udhcpc busybox                     # DHCP client in VM namespaces; busybox httpd in TestNeutron
	netsniff-ng nftables ethtool       # kernel baselines for make bench
	clang llvm libbpf-dev              # make bench: the baseline's tc sink (shared/baseline/bpf/sink.c); developers: `go generate` in pkg/datapath/ebpf (building and testing use the committed object)
	gcc libc6-dev linux-libc-dev       # make bench: builds the baseline's generator (shared/baseline/gen/udpgen.c)
	linux-perf                         # nagare-bench datapath --profile
	jq bc tmux procps psmisc
	curl                               # HTTP through NAT in end-to-end tests (TestVyattaOneBox)
	python3-openstackclient            # the openstack CLI drives the Neutron and identity APIs in tests
	chromium fonts-dejavu-core         # the dashboard's browser tests and make screenshots (headless, driven by chromedp)
	frr                                # BGP upstreams (bgpd, bfdd, zebra) in namespaces for the uplink tests (test/e2e/bgp_test.go)
)

missing=()
for p in "${PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "setup: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The tests start FRR's daemons in their namespaces themselves; the
# package's own service (routing in the root namespace) stays off.
if command -v systemctl >/dev/null && systemctl is-enabled frr >/dev/null 2>&1; then
	systemctl disable --now frr >/dev/null 2>&1 || true
fi

if ! command -v go >/dev/null; then
	export PATH=$PATH:/usr/local/go/bin
fi
go mod download
