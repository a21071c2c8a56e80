#!/bin/sh
# udhcpc's script in the test guests: configures eth0 from the lease, as a
# cloud image's DHCP client would, and prints what it got.
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip -4 route flush dev "$interface"
	;;
bound | renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/$mask" dev "$interface"
	[ -n "$mtu" ] && ip link set "$interface" mtu "$mtu"
	[ -n "$router" ] && ip route add default via "${router%% *}" dev "$interface"
	echo "lease ip=$ip mask=$mask router=$router mtu=$mtu server=$serverid"
	;;
esac
exit 0
