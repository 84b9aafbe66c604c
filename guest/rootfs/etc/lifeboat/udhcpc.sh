#!/bin/sh
# busybox udhcpc script: applies the lease of the network's dnsmasq (address, classless
# static routes or the router, resolvers) and writes it to /run/lifeboat/lease (eth0) or
# /run/lifeboat/lease.<interface>. Only eth0's lease sets the resolvers; the routes of other
# interfaces (hot-plugged ones) get a metric of 100 + their ifindex, so eth0's stay preferred.
metric=
lease=/run/lifeboat/lease
if [ "$interface" != eth0 ]; then
	metric="metric $((100 + $(cat /sys/class/net/$interface/ifindex 2>/dev/null || echo 0)))"
	lease=/run/lifeboat/lease.$interface
fi
case "$1" in
deconfig)
	ip -4 addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound | renew)
	ip -4 addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	[ -z "$mtu" ] || ip link set "$interface" mtu "$mtu"
	if [ -n "$staticroutes" ]; then
		set -- $staticroutes
		while [ $# -ge 2 ]; do
			ip route replace "$1" via "$2" dev "$interface" $metric
			shift 2
		done
	elif [ -n "$router" ]; then
		ip route replace default via "${router%% *}" dev "$interface" $metric
	fi
	if [ -n "$dns" ] && [ -z "$metric" ]; then
		: >/etc/resolv.conf
		for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
	fi
	mkdir -p /run/lifeboat
	echo "ip=$ip mask=$mask router=$router hostname=$hostname" >"$lease"
	;;
esac
exit 0
