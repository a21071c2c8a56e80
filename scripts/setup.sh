#!/usr/bin/env bash
# Installs everything Nagare's build, tests, demo and benchmarks need on a
# fresh Debian machine. Idempotent: installs only what is missing.
set -euo pipefail

PKGS=(
	etcd-server etcd-client            # external-etcd mode tests (etcd, etcdctl)
	iproute2 iputils-ping              # namespaces, veth, ping
	iperf3 tcpdump tshark              # traffic and captures in end-to-end tests
	udhcpc busybox-static              # DHCP client in VM namespaces; busybox httpd in TestNeutron;
	                                   # the static busybox is all of a QEMU guest's userland (TestRealVMs)
	qemu-system-x86                    # real guests in end-to-end tests (test/e2e/harness/qemu.go)
	netsniff-ng nftables ethtool       # kernel baselines for make bench
	clang llvm libbpf-dev              # make bench: builds the baseline's tc sink (shared/baseline/bpf/sink.c)
	gcc libc6-dev linux-libc-dev       # make bench: builds the baseline's generator (shared/baseline/gen/udpgen.c)
	linux-perf                         # nagare-bench datapath --profile
	jq bc tmux procps psmisc
	curl                               # HTTP through NAT in end-to-end tests (TestVyattaOneBox)
	python3-openstackclient            # the openstack CLI drives the Neutron and identity APIs in tests
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

# The QEMU guests' kernel: Debian's linux-image-amd64 (its current
# linux-image-<version>-amd64), unpacked into a cache directory rather than
# installed. Installed, it would become this machine's boot kernel (grub and
# initramfs-tools hooks, an initramfs build) for nothing but a test guest;
# the tests only read vmlinuz and a few modules from the unpacked tree
# (test/e2e/guest finds it here, or at $NAGARE_GUEST_KERNEL_DIR).
GUEST_KERNEL_DIR=${NAGARE_GUEST_KERNEL_DIR:-/var/cache/nagare/guest-kernel}
kernel_pkg() {
	apt-cache depends linux-image-amd64 2>/dev/null | awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }'
}
kpkg=$(kernel_pkg)
if [ -z "$kpkg" ]; then
	apt-get update -qq
	kpkg=$(kernel_pkg)
fi
[ -n "$kpkg" ] || { echo "setup: apt knows no linux-image-amd64" >&2; exit 1; }
if [ ! -f "$GUEST_KERNEL_DIR/boot/vmlinuz-${kpkg#linux-image-}" ]; then
	echo "setup: unpacking $kpkg into $GUEST_KERNEL_DIR (guest kernel for the QEMU tests)"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	chown _apt "$tmp" 2>/dev/null || true # apt downloads as _apt when it can
	(cd "$tmp" && { apt-get download -qq "$kpkg" 2>/dev/null || { apt-get update -qq && apt-get download -qq "$kpkg"; }; })
	rm -rf "$GUEST_KERNEL_DIR.new"
	mkdir -p "$GUEST_KERNEL_DIR.new"
	dpkg-deb -x "$tmp"/"$kpkg"_*.deb "$GUEST_KERNEL_DIR.new"
	rm -rf "$GUEST_KERNEL_DIR"
	mv "$GUEST_KERNEL_DIR.new" "$GUEST_KERNEL_DIR"
	rm -rf "$tmp"
	trap - EXIT
fi

if ! command -v go >/dev/null; then
	export PATH=$PATH:/usr/local/go/bin
fi
go mod download
