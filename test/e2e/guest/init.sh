#!/bin/sh
# /init of the test guests: busybox's userland, the NIC's driver, and a
# control loop on the serial console (see console.go for the protocol).
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run /srv
# Kernel messages stay in dmesg: on the console they would land in the
# middle of a command's output.
dmesg -n 1
while read -r m; do
	insmod "/lib/modules/$m" || echo "@@nagare-error insmod $m failed@@"
done </etc/modules
ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do
	sleep 0.05
	i=$((i + 1))
done
ip link set eth0 up || echo "@@nagare-error no eth0@@"
# Commands arrive on the console: they must not come back as output.
stty -echo
echo "@@nagare-ready@@"
# One command a line: "ID SECONDS COMMAND". Its output is framed by
# markers; the last carries the exit status. A command still running after
# SECONDS is killed, so that a hung transfer cannot wedge the console.
while IFS= read -r line; do
	id=${line%% *}
	rest=${line#* }
	secs=${rest%% *}
	cmd=${rest#* }
	echo "@@nagare-start $id@@"
	timeout -s KILL "$secs" sh -c "$cmd" </dev/null 2>&1
	rc=$?
	printf '\n@@nagare-done %s %s@@\n' "$id" "$rc"
done
