#!/usr/bin/env bash
# The all-in-one demo: starts nagare-server with its embedded etcd, builds a
# small virtual topology through the nagare CLI, and prints it. Cleans up
# after itself (server stopped, data directory removed).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-$PWD/bin}
API_PORT=${API_PORT:-9696}
ETCD_PORT=${ETCD_PORT:-2379}
DATA=$(mktemp -d /tmp/nagare-demo.XXXXXX)
export NAGARE_API=http://127.0.0.1:$API_PORT

cleanup() {
	[ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
	rm -rf "$DATA"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
nagare() { printf '\033[36mnagare> %s\033[0m\n' "$*"; "$BIN/nagare" -e "$*"; }

say "starting nagare-server (embedded etcd in $DATA)"
"$BIN/nagare-server" --data-dir "$DATA" --listen 127.0.0.1:$API_PORT \
	--etcd-listen http://127.0.0.1:$ETCD_PORT --etcd-peer-listen http://127.0.0.1:$((ETCD_PORT + 1)) \
	--log-level warn &
SERVER_PID=$!
for _ in $(seq 100); do
	curl -sf "$NAGARE_API/healthz" >/dev/null 2>&1 && break
	sleep 0.1
done
curl -sf "$NAGARE_API/healthz"; echo

say "a host, as an agent would register it"
curl -sf -X POST "$NAGARE_API/api/v1/hosts" -d '{"name":"carlsberg","addresses":["192.168.100.201"]}' >/dev/null
nagare list host

say "building the topology with the CLI"
nagare create tunnel-zone name vxlan-tz type vxlan
nagare tunnel-zone tzone0 add member host host0 address 192.168.100.201
nagare create bridge name internal
nagare bridge bridge0 add port
nagare bridge bridge0 add port
nagare create router name MidoNet Provider Router
nagare router router0 add port address 10.0.0.1 net 10.0.0.0/24
nagare bridge bridge0 port port0 set peer router0:port0
nagare router router0 add route src 0.0.0.0/0 dst 10.0.0.0/24 type normal port router0:port0
nagare bridge bridge0 add dhcp subnet 10.0.0.0/24 gw 10.0.0.1
nagare bridge bridge0 dhcp subnet 10.0.0.0/24 add host name vm1 mac 02:00:00:00:00:05 address 10.0.0.5
nagare host host0 add binding interface tap-vm1 port bridge0:port1
nagare create chain name nat-in
nagare chain chain0 add rule dst 10.81.14.201 proto 6 dst-port 80 type dnat action accept target 10.0.0.5:80

say "the topology"
nagare list tunnel-zone
nagare tunnel-zone tzone0 list member
nagare list bridge
nagare bridge bridge0 list port
nagare list router
nagare router router0 list port
nagare router router0 list route
nagare bridge bridge0 list dhcp
nagare host host0 list binding
nagare chain chain0 list rule

say "bad input is refused and changes nothing"
nagare create router name bad state sideways || true
curl -s -X POST "$NAGARE_API/api/v1/routes" -d '{"dst":"10.0.0.0/33"}'; echo
nagare delete bridge bridge0 || true

say "done: server stopped, $DATA removed"
