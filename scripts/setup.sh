#!/usr/bin/env bash
# Installs everything Nagare's build, tests, demo and benchmarks need on a
# fresh Debian machine. Idempotent: installs only what is missing.
set -euo pipefail

PKGS=(
	etcd-server etcd-client            # external-etcd mode tests (etcd, etcdctl)
	iproute2 iputils-ping              # namespaces, veth, ping
	iperf3 tcpdump tshark              # traffic and captures in end-to-end tests
	udhcpc busybox                     # DHCP client in VM namespaces; busybox httpd in TestNeutron
	qemu-system-x86 xz-utils           # real guests in end-to-end tests (test/e2e/guest); xz unpacks their kernel
	netsniff-ng nftables ethtool       # kernel baselines for make bench
	clang llvm libbpf-dev              # make bench: the baseline's tc sink (shared/baseline/bpf/sink.c); developers: `go generate` in pkg/datapath/ebpf (building and testing use the committed object)
	gcc libc6-dev linux-libc-dev       # make bench: builds the baseline's generator (shared/baseline/gen/udpgen.c)
	linux-perf                         # nagare-bench datapath --profile
	jq bc tmux procps psmisc
	curl                               # HTTP through NAT in end-to-end tests (TestVyattaOneBox)
	python3-openstackclient            # the openstack CLI drives the Neutron and identity APIs in tests
	python3-neutronclient              # its plugin: network trunk/qos/rbac, address group, subnet pool, firewall group commands
	python3                            # TestNeutronExtensions sends 802.1Q frames with a raw socket (the kernel may lack 8021q)
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

# What the QEMU guests of the end-to-end tests boot (test/e2e/guest):
# Debian's linux-image-amd64 (its current linux-image-<version>-amd64) and
# busybox-static, unpacked into a cache directory rather than installed. An
# installed kernel would become this machine's boot kernel (grub and
# initramfs-tools hooks, an initramfs build) for nothing but a test guest;
# busybox-static conflicts with the busybox package. The tests read
# boot/vmlinuz-*, a few lib/modules and bin/busybox from the tree
# ($NAGARE_GUEST_DIR names another). Unpacked again when a package changes.
GUEST_DIR=${NAGARE_GUEST_DIR:-/var/cache/nagare/guest}
kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
candidate() { apt-cache policy "$1" 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'; }
kpkg=$(kernel_pkg)
if [ -z "$kpkg" ]; then
	apt-get update -qq
	kpkg=$(kernel_pkg)
fi
[ -n "$kpkg" ] || { echo "setup: apt knows no linux-image-amd64" >&2; exit 1; }
guest_pkgs=("$kpkg" busybox-static)
want=""
for p in "${guest_pkgs[@]}"; do
	want+="$p=$(candidate "$p") "
done
if [ "$(cat "$GUEST_DIR/.packages" 2>/dev/null)" != "$want" ]; then
	echo "setup: unpacking ${guest_pkgs[*]} into $GUEST_DIR (what the QEMU test guests boot)"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	chown _apt "$tmp" 2>/dev/null || true # apt downloads as _apt when it can
	(cd "$tmp" && { apt-get download -qq "${guest_pkgs[@]}" 2>/dev/null ||
		{ apt-get update -qq && apt-get download -qq "${guest_pkgs[@]}"; }; })
	rm -rf "$GUEST_DIR.new"
	mkdir -p "$GUEST_DIR.new"
	for deb in "$tmp"/*.deb; do
		dpkg-deb -x "$deb" "$GUEST_DIR.new"
	done
	echo "$want" >"$GUEST_DIR.new/.packages"
	rm -rf "$GUEST_DIR"
	mv "$GUEST_DIR.new" "$GUEST_DIR"
	rm -rf "$tmp"
	trap - EXIT
fi

if ! command -v go >/dev/null; then
	export PATH=$PATH:/usr/local/go/bin
fi
go mod download
