#!/bin/sh
# busybox udhcpc script: applies the lease of the network's dnsmasq (address, classless
# static routes or the router, resolvers) and writes it to /run/lifeboat/lease.
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
			ip route replace "$1" via "$2" dev "$interface"
			shift 2
		done
	elif [ -n "$router" ]; then
		ip route replace default via "${router%% *}" dev "$interface"
	fi
	if [ -n "$dns" ]; then
		: >/etc/resolv.conf
		for d in $dns; do echo "nameserver $d" >>/etc/resolv.conf; done
	fi
	mkdir -p /run/lifeboat
	echo "ip=$ip mask=$mask router=$router hostname=$hostname" >/run/lifeboat/lease
	;;
esac
exit 0
