#!/usr/bin/env bash
# The all-in-one demo (`make demo`): Nagare on one machine, with real traffic.
#
#   nagare-server (embedded etcd) ── loopback ── nagare-agent hv1, nagare-agent hv2
#
#   namespaces:  <P>-hv1, <P>-hv2   "hypervisors", one agent's datapath each, joined by
#                <P>-ul             an underlay bridge (10.99.0.0/24, VXLAN between them)
#                <P>-vm11 … vm22    "VMs", each a veth whose other end is in a hypervisor
#
#          router0 ─ 10.0.1.1 ── bridge0 (net1): vm11 on hv1 (static), vm12 on hv2 (DHCP)
#                  └ 10.0.2.1 ── bridge1 (net2): vm21 on hv1, vm22 on hv2
#
# It builds that topology with the nagare CLI, prints the CLI's view of it,
# gets vm12 an address with DHCP, checks pings (same subnet and routed, across
# hosts) and a short iperf3, and shows the datapath the agents report. It
# needs root (network namespaces); everything it creates carries a unique
# prefix and is removed on exit, even on failure or Ctrl-C. Exit status: 0
# when every check passed.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
P=${DEMO_PREFIX:-ngdemo$$}          # namespace prefix, unique per run
WORK=$(mktemp -d /tmp/nagare-demo.XXXXXX)
PIDS=()
FAILED=()
PASSED=0

# ---------------------------------------------------------------- helpers
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
nagare() { printf '\033[36mnagare> %s\033[0m\n' "$*"; "$BIN/nagare" -e "$*"; }
quiet() { "$BIN/nagare" -e "$*"; }    # for values the script itself needs
in_ns() { local ns=$1; shift; ip netns exec "$P-$ns" "$@"; }
check() { # check "what" command… : runs the command, records the result
	local what=$1; shift
	if "$@" >"$WORK/check.out" 2>&1; then
		printf '  \033[32m✓\033[0m %s\n' "$what"; PASSED=$((PASSED + 1))
	else
		printf '  \033[31m✗ %s\033[0m\n' "$what"; sed 's/^/      /' "$WORK/check.out" | tail -15
		FAILED+=("$what")
	fi
}
die() { printf '\033[31mdemo: %s\033[0m\n' "$*" >&2; exit 1; }

exec 3>&1 4>&2 # the terminal, for cleanup(): a signal may arrive inside a redirected check
cleanup() {
	local rc=$?
	set +e
	exec 1>&3 2>&4
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$P-"); do
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
		ip netns del "$ns"
	done
	if [ $rc -ne 0 ] && [ -d "$WORK" ]; then
		echo "demo: logs of the failed run:"
		for f in "$WORK"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done
	fi
	rm -rf "$WORK"
	echo "demo: cleaned up (processes stopped, namespaces $P-* deleted, $WORK removed)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { # the first free TCP port from $1 on
	local p=$1
	while ss -Htln "sport = :$p" | grep -q .; do p=$((p + 1)); done
	echo "$p"
}

wait_for() { # wait_for SECONDS command… : retry every 0.2 s
	local deadline=$((SECONDS + $1)); shift
	until "$@" >/dev/null 2>&1; do
		[ $SECONDS -ge $deadline ] && return 1
		sleep 0.2
	done
}

# ---------------------------------------------------------------- preflight
[ "$(id -u)" -eq 0 ] || die "needs root: it creates network namespaces (run: sudo make demo)"
for tool in ip ping iperf3 udhcpc curl jq ss; do
	command -v $tool >/dev/null || die "$tool is missing (scripts/setup.sh installs it)"
done
for b in nagare nagare-server nagare-agent; do
	[ -x "$BIN/$b" ] || die "$BIN/$b is missing (run: make build)"
done

API_PORT=$(free_port "${API_PORT:-9696}")
ETCD_PORT=$(free_port "${ETCD_PORT:-2379}")
PEER_PORT=$(free_port $((ETCD_PORT + 1)))
export NAGARE_API=http://127.0.0.1:$API_PORT
ETCD=http://127.0.0.1:$ETCD_PORT

# ---------------------------------------------------------------- server
say "starting nagare-server (embedded etcd in $WORK/data, API $NAGARE_API)"
"$BIN/nagare-server" --data-dir "$WORK/data" --listen 127.0.0.1:$API_PORT \
	--etcd-listen "$ETCD" --etcd-peer-listen http://127.0.0.1:$PEER_PORT \
	--log-level warn --auth noauth >"$WORK/server.log" 2>&1 &
PIDS+=($!)
wait_for 30 curl -sf "$NAGARE_API/healthz" || die "nagare-server did not come up"
curl -sf "$NAGARE_API/healthz"; echo

# ---------------------------------------------------------------- hosts
say "two hypervisors (namespaces $P-hv1, $P-hv2) on an underlay bridge, one agent each"
ip netns add "$P-ul"
in_ns ul ip link set lo up
in_ns ul ip link add br0 type bridge
in_ns ul ip link set br0 up
for i in 1 2; do
	ip netns add "$P-hv$i"
	in_ns hv$i ip link set lo up
	ip link add ul0 netns "$P-hv$i" type veth peer name hv$i netns "$P-ul"
	in_ns ul ip link set hv$i master br0 up
	in_ns hv$i ip addr add 10.99.0.$i/24 dev ul0
	in_ns hv$i ip link set ul0 up
	metrics_port=$(free_port $((7300 + i)))
	eval "METRICS$i=127.0.0.1:$metrics_port"
	# The agent runs in the root namespace (it reaches etcd on loopback);
	# its datapath works inside the hypervisor's namespace.
	"$BIN/nagare-agent" --host-name hv$i --etcd-endpoints "$ETCD" --tunnel-ip 10.99.0.$i \
		--netns /run/netns/$P-hv$i --metrics-listen 127.0.0.1:$metrics_port \
		>"$WORK/agent-hv$i.log" 2>&1 &
	PIDS+=($!)
	# One at a time: host aliases follow registration order (host0 = hv1).
	wait_for 20 sh -c "'$BIN/nagare' -e 'list host' | grep -q 'name hv$i .*alive true'" ||
		die "agent hv$i did not register"
done
nagare list host

# ---------------------------------------------------------------- topology
say "building the virtual topology with the CLI"
nagare create tunnel-zone name vxlan-tz type vxlan
nagare tunnel-zone tzone0 add member host host0 address 10.99.0.1
nagare tunnel-zone tzone0 add member host host1 address 10.99.0.2
nagare create bridge name net1
nagare create bridge name net2
nagare create router name MidoNet Provider Router
nagare router router0 add port address 10.0.1.1 net 10.0.1.0/24
nagare router router0 add port address 10.0.2.1 net 10.0.2.0/24
nagare bridge bridge0 add port
nagare bridge bridge0 port port0 set peer router0:port0
nagare bridge bridge1 add port
nagare bridge bridge1 port port0 set peer router0:port1
nagare router router0 add route src 0.0.0.0/0 dst 10.0.1.0/24 type normal port router0:port0
nagare router router0 add route src 0.0.0.0/0 dst 10.0.2.0/24 type normal port router0:port1
nagare bridge bridge0 add dhcp subnet 10.0.1.0/24 gw 10.0.1.1
nagare bridge bridge1 add dhcp subnet 10.0.2.0/24 gw 10.0.2.1

say "four VMs: a namespace each, its veth's other end in a hypervisor, bound to a bridge port"
# vm  host bridge address      MAC
VMS="vm11 hv1 0 10.0.1.11 02:00:0a:00:01:0b
vm12 hv2 0 10.0.1.12 02:00:0a:00:01:0c
vm21 hv1 1 10.0.2.11 02:00:0a:00:02:0b
vm22 hv2 1 10.0.2.12 02:00:0a:00:02:0c"
while read -r vm hv br addr mac; do
	ip netns add "$P-$vm"
	in_ns $vm ip link set lo up
	ip link add tap-$vm netns "$P-$hv" type veth peer name eth0 netns "$P-$vm"
	in_ns $hv ip link set tap-$vm up
	in_ns $vm ip link set eth0 address $mac mtu 1450 up
	port=$(quiet bridge bridge$br add port)
	nagare host host$((${hv#hv} - 1)) add binding interface tap-$vm port "$port"
	nagare bridge bridge$br dhcp subnet 10.0.$((br + 1)).0/24 add host name $vm mac $mac address $addr
done <<<"$VMS"
# vm12 gets its address from DHCP below; the others are configured by hand.
for spec in "vm11 10.0.1.11 10.0.1.1" "vm21 10.0.2.11 10.0.2.1" "vm22 10.0.2.12 10.0.2.1"; do
	set -- $spec
	in_ns $1 ip addr add $2/24 dev eth0
	in_ns $1 ip route add default via $3
done

say "the topology, as the CLI shows it"
nagare list tunnel-zone
nagare tunnel-zone tzone0 list member
nagare list bridge
nagare bridge bridge0 list port
nagare list router
nagare router router0 list port
nagare router router0 list route
nagare bridge bridge0 list dhcp
nagare bridge bridge0 dhcp subnet 10.0.1.0/24 list host
nagare list host
nagare host host0 list binding
nagare host host1 list binding

# ---------------------------------------------------------------- traffic
say "DHCP: vm12 (on hv2) asks for an address; hv2's agent answers"
cat >"$WORK/udhcpc.sh" <<'SCRIPT'
#!/bin/sh
# udhcpc calls this with the lease in the environment.
case "$1" in
bound|renew)
	echo "lease: ip $ip/$mask router $router mtu $mtu server $serverid lease ${lease}s"
	ip addr add "$ip/$mask" dev "$interface"
	ip link set "$interface" mtu "$mtu"
	ip route replace default via "$router"
	;;
esac
SCRIPT
chmod +x "$WORK/udhcpc.sh"
dhcp() { # the binding reaches hv2's agent through etcd: allow a few tries
	for _ in 1 2 3 4 5; do
		in_ns vm12 udhcpc -i eth0 -f -q -n -t 3 -T 1 -O mtu -s "$WORK/udhcpc.sh" 2>&1 | grep '^lease:' && return 0
	done
	return 1
}
check "vm12 gets a DHCP lease" dhcp
cat "$WORK/check.out"
check "vm12 got its fixed address 10.0.1.12/24" grep -q 'inet 10.0.1.12/24' <(in_ns vm12 ip -4 addr show eth0)
check "vm12 got the router 10.0.1.1 as its default gateway" grep -q 'default via 10.0.1.1' <(in_ns vm12 ip route)
check "vm12 got MTU 1450 (underlay 1500 - 50 for VXLAN)" grep -qx 1450 <(in_ns vm12 cat /sys/class/net/eth0/mtu)

say "ping: same subnet and routed, between VMs on different hosts"
pings() { # pings FROM DST : wait for the first answer, then 3 in a row
	wait_for 10 in_ns $1 ping -c 1 -W 1 $2 && in_ns $1 ping -c 3 -i 0.2 -W 1 $2
}
check "vm11 (hv1) → vm12 (hv2), bridge net1, 10.0.1.12" pings vm11 10.0.1.12
tail -4 "$WORK/check.out"
check "vm21 (hv1) → vm22 (hv2), bridge net2, 10.0.2.12" pings vm21 10.0.2.12
check "vm11 (hv1) → vm22 (hv2), routed by router0, 10.0.2.12" pings vm11 10.0.2.12
tail -4 "$WORK/check.out"
check "vm22 (hv2) → vm11 (hv1), routed back, 10.0.1.11" pings vm22 10.0.1.11
check "vm12 (DHCP, hv2) → vm21 (hv1), routed, 10.0.2.11" pings vm12 10.0.2.11

say "iperf3: 3 seconds of TCP from vm11 (hv1) to vm12 (hv2) over VXLAN"
in_ns vm12 iperf3 -s -1 -B 10.0.1.12 >"$WORK/iperf3-server.log" 2>&1 &
PIDS+=($!)
iperf() {
	wait_for 5 sh -c "ip netns exec $P-vm12 ss -Htln 'sport = :5201' | grep -q ." || true
	in_ns vm11 iperf3 -c 10.0.1.12 -t 3 -f m
}
check "iperf3 vm11 → vm12 completes" iperf
grep -E 'sender|receiver' "$WORK/check.out" || true

say "the datapath view: what each agent reports (mm-dpctl's view, from anywhere)"
sleep 2 # the agents publish every 2 s
nagare host host0 show datapath
nagare host host1 show datapath
nagare host host0 list flow | head -4 | cut -c1-220 || true # (the first few)
echo "hv1's Prometheus metrics (http://$METRICS1/metrics), a few of them:"
curl -s "http://$METRICS1/metrics" | grep -E '^nagare_(agent_upcalls_total|datapath_(hits_total|misses_total|flows|tunnel_tx_packets_total))' || true
check "hv1's datapath has flows and hits" sh -c "curl -s http://$METRICS1/metrics | awk '/^nagare_datapath_flows /{f=\$2} /^nagare_datapath_hits_total /{h=\$2} END{exit !(f>0 && h>0)}'"

say "trace: what the simulation does with a packet, device by device (nothing is sent)"
nagare trace port bridge0:port1 src 10.0.1.11 dst 10.0.2.12 proto icmp

# ---------------------------------------------------------------- more CLI
say "rule chains: a DNAT rule in a chain of its own (attached to a router's infilter it translates; test/e2e/nat_test.go proves that with curl)"
nagare create chain name nat-in
nagare chain chain0 add rule dst 10.81.14.201 proto 6 dst-port 80 type dnat action accept target 10.0.1.11:80
nagare chain chain0 list rule

say "bad input is refused and changes nothing"
nagare create router name bad state sideways || true
curl -s -X POST "$NAGARE_API/api/v1/routes" -d '{"dst":"10.0.0.0/33"}'; echo
nagare delete bridge bridge0 || true
nagare list bridge

# ---------------------------------------------------------------- summary
say "summary"
if [ ${#FAILED[@]} -gt 0 ]; then
	printf '[31m%d of %d checks failed:[0m
' ${#FAILED[@]} $((PASSED + ${#FAILED[@]}))
	printf '  - %s
' "${FAILED[@]}"
	exit 1
fi
printf '[32mall %d checks passed[0m
' $PASSED
