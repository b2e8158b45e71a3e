#!/usr/bin/env bash
#
# Two nodes of an overlay network, a pod on each, and the tunnel between them: what an uplink
# capture in a VXLAN, Geneve, IP-in-IP, GRE or VLAN-tagged cluster holds.
#
#   tunnels.sh probe KIND                   whether this kernel makes KIND devices
#   tunnels.sh up PREFIX KIND               build the lab (tears down a previous one of that prefix)
#   tunnels.sh down PREFIX                  stop its servers and delete its namespaces
#   tunnels.sh capture PREFIX KIND OUTFILE  capture node A's underlay while the traffic runs
#
# KIND: vxlan (UDP 4789), vxlan8472 (the kernel's default port, flannel's), geneve (UDP 6081),
# ipip, gre (with key 42), vlan (802.1Q tag 100 on the underlay, no tunnel).
#
#   PREFIX-pa                PREFIX-na                         PREFIX-nb                 PREFIX-pb
#   eth0 10.244.1.10/24 --- PREFIX-va 10.244.1.1/24           PREFIX-vb 10.244.2.1/24 --- eth0 10.244.2.20/24
#                           PREFIX-ua 10.224.0.4/24 --------- PREFIX-ub 10.224.0.5/24        nginx :80
#                           PREFIX-tun (the tunnel to nb)     PREFIX-tun (the tunnel to na)  dnsmasq :53
#
# Node B blackholes 10.244.2.99, so a SYN to it crosses the tunnel and is dropped there. The
# traffic, from pod A: a blackholed connection, one refused (10.244.2.20:81, nothing listens),
# one established with an HTTP 200, and two DNS lookups (web.lab.test: 10.244.2.20; nx.lab.test:
# NXDOMAIN). IPv6 is off in every namespace, so every IP packet on the underlay is tunnelled.
# VNI and GRE key are 42. State (configs, pid files, logs) is kept in /tmp/PREFIX-tunnels/.

set -euo pipefail

readonly LAB_NAME=tunnels
# shellcheck source=tests/lab/netns.sh
source "${BASH_SOURCE[0]%/*}/netns.sh"

usage() {
	cat >&2 <<-EOF
		usage: ${0##*/} probe KIND
		       ${0##*/} up PREFIX KIND
		       ${0##*/} down PREFIX
		       ${0##*/} capture PREFIX KIND OUTFILE
	EOF
	exit 2
}

set_prefix() {
	P=$1
	check_prefix "$P"
	NA=$P-na
	NB=$P-nb
	PA=$P-pa
	PB=$P-pb
	STATE=/tmp/$P-tunnels
}

check_kind() {
	case $1 in
	vxlan | vxlan8472 | geneve | ipip | gre | vlan) ;;
	*) die "unknown tunnel kind '$1' (vxlan, vxlan8472, geneve, ipip, gre, vlan)" ;;
	esac
}

# tunnel_args KIND LOCAL REMOTE: the `ip link add NAME ...` arguments of the tunnel device.
tunnel_args() {
	local kind=$1 local=$2 remote=$3
	case $kind in
	vxlan) echo "type vxlan id 42 local $local remote $remote dstport 4789" ;;
	vxlan8472) echo "type vxlan id 42 local $local remote $remote dstport 8472" ;;
	geneve) echo "type geneve id 42 remote $remote" ;;
	ipip) echo "type ipip local $local remote $remote" ;;
	gre) echo "type gre local $local remote $remote key 42" ;;
	esac
}

cmd_probe() {
	local kind=$1 ns="tprobe$$" ok=0
	check_kind "$kind"
	ip netns add "$ns"
	if [[ $kind == vlan ]]; then
		ip -n "$ns" link add tp0 type veth peer name tp1 &&
			ip -n "$ns" link add link tp0 name tp0.100 type vlan id 100 2>/dev/null || ok=1
	else
		# shellcheck disable=SC2046
		ip -n "$ns" link add tp0 $(tunnel_args "$kind" 192.0.2.1 192.0.2.2) 2>/dev/null || ok=1
	fi
	ip netns del "$ns"
	return $ok
}

node_ns() {
	local ns=$1
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
	nsx "$ns" sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0
}

# pod SIDE: the pod namespace of side a or b and its veth to its node.
pod() {
	local side=$1 n
	n=$([[ $side == a ]] && echo 1 || echo 2)
	local node=$P-n$side podns=$P-p$side
	ip -n "$node" link add "$P-v$side" type veth peer name eth0 netns "$podns"
	ip -n "$node" addr add "10.244.$n.1/24" dev "$P-v$side"
	ip -n "$node" link set "$P-v$side" up
	# Room for the tunnel's headers, as an overlay CNI sets it.
	ip -n "$podns" link set eth0 mtu 1400 up
	ip -n "$podns" addr add "10.244.$n.$((n * 10))/24" dev eth0
	ip -n "$podns" route add default via "10.244.$n.1"
}

build_topology() {
	local kind=$1 ns
	for ns in "$NA" "$NB" "$PA" "$PB"; do
		node_ns "$ns"
	done
	nsx "$NA" sysctl -qw net.ipv4.ip_forward=1
	nsx "$NB" sysctl -qw net.ipv4.ip_forward=1
	pod a
	pod b

	# The underlay.
	ip -n "$NA" link add "$P-ua" type veth peer name "$P-ub" netns "$NB"
	ip -n "$NA" link set "$P-ua" up
	ip -n "$NB" link set "$P-ub" up

	if [[ $kind == vlan ]]; then
		# Node addresses on the VLAN only: every packet between the nodes is tagged.
		ip -n "$NA" link add link "$P-ua" name "$P-ua.100" type vlan id 100
		ip -n "$NB" link add link "$P-ub" name "$P-ub.100" type vlan id 100
		ip -n "$NA" addr add 10.224.0.4/24 dev "$P-ua.100"
		ip -n "$NB" addr add 10.224.0.5/24 dev "$P-ub.100"
		ip -n "$NA" link set "$P-ua.100" up
		ip -n "$NB" link set "$P-ub.100" up
		ip -n "$NA" route add 10.244.2.0/24 via 10.224.0.5
		ip -n "$NB" route add 10.244.1.0/24 via 10.224.0.4
	else
		ip -n "$NA" addr add 10.224.0.4/24 dev "$P-ua"
		ip -n "$NB" addr add 10.224.0.5/24 dev "$P-ub"
		# shellcheck disable=SC2046
		ip -n "$NA" link add "$P-tun" $(tunnel_args "$kind" 10.224.0.4 10.224.0.5)
		# shellcheck disable=SC2046
		ip -n "$NB" link add "$P-tun" $(tunnel_args "$kind" 10.224.0.5 10.224.0.4)
		ip -n "$NA" link set "$P-tun" up
		ip -n "$NB" link set "$P-tun" up
		case $kind in
		vxlan | vxlan8472 | geneve)
			# Ethernet tunnels: the peer node's tunnel address as the gateway, as flannel does.
			ip -n "$NA" addr add 10.244.255.4/24 dev "$P-tun"
			ip -n "$NB" addr add 10.244.255.5/24 dev "$P-tun"
			ip -n "$NA" route add 10.244.2.0/24 via 10.244.255.5 dev "$P-tun"
			ip -n "$NB" route add 10.244.1.0/24 via 10.244.255.4 dev "$P-tun"
			;;
		*)
			ip -n "$NA" route add 10.244.2.0/24 dev "$P-tun"
			ip -n "$NB" route add 10.244.1.0/24 dev "$P-tun"
			;;
		esac
	fi
	ip -n "$NB" route add blackhole 10.244.2.99/32
}

start_servers() {
	cat >"$STATE/dnsmasq.conf" <<-EOF
		no-resolv
		no-hosts
		no-poll
		bind-interfaces
		listen-address=10.244.2.20
		port=53
		pid-file=$STATE/dnsmasq.pid
		log-facility=$STATE/dnsmasq.log
		local=/lab.test/
		host-record=web.lab.test,10.244.2.20
	EOF
	nginx_conf "$STATE" '
        listen 10.244.2.20:80;
        location = / { return 200 "ok\n"; }'
	nsx "$PB" dnsmasq --conf-file="$STATE/dnsmasq.conf"
	nsx "$PB" nginx -c "$STATE/nginx.conf"
	wait_until 50 listening "$PB" u 53 || die "dnsmasq is not listening"
	wait_until 50 listening "$PB" t 80 || die "nginx is not listening"
	# The tunnel carries pod traffic both ways before any capture starts.
	nsx "$PA" curl -sf --max-time 5 -o /dev/null http://10.244.2.20/ || die "pod A cannot reach pod B's nginx"
}

cmd_up() {
	local kind=$1
	check_kind "$kind"
	cmd_down 2>/dev/null
	rm -rf "$STATE"
	mkdir -p "$STATE"
	build_topology "$kind"
	start_servers
	log "lab $P ($kind) is up, state in $STATE"
}

cmd_down() {
	if [[ -d $STATE ]]; then
		stop_pidfile "$STATE/capture.pid" tcpdump
		stop_pidfile "$STATE/nginx.pid" nginx
		stop_pidfile "$STATE/dnsmasq.pid" dnsmasq
	fi
	delete_namespaces "$PA" "$PB" "$NA" "$NB"
	rm -rf "$STATE"
}

traffic() {
	# Blackholed first: the SYN and its retransmissions, then 4 s of packet time pass under
	# the traffic that follows, past the 3 s SYN timeout.
	nsx "$PA" curl -s --connect-timeout 4 -o /dev/null http://10.244.2.99/ || true
	nsx "$PA" curl -s --connect-timeout 2 -o /dev/null http://10.244.2.20:81/ || true
	nsx "$PA" curl -sf --max-time 5 -o /dev/null http://10.244.2.20/
	nsx "$PA" dig +tries=1 +time=2 @10.244.2.20 web.lab.test A >/dev/null
	nsx "$PA" dig +tries=1 +time=2 @10.244.2.20 nx.lab.test A >/dev/null
}

cmd_capture() {
	local kind=$1 out=$2 err=$STATE/capture.log pid
	check_kind "$kind"
	ns_exists "$NA" || die "lab $P is not up"
	: >"$err"
	# The underlay's parent device: for vlan, the tagged frames.
	env --default-signal=INT ip netns exec "$NA" tcpdump -i "$P-ua" -n -U -Z root -w "$out" 2>"$err" &
	pid=$!
	echo "$pid" >"$STATE/capture.pid"
	wait_until 100 grep -q 'listening on' "$err" || die "tcpdump did not start: $(cat "$err")"
	traffic
	# libpcap's TPACKET_V3 block timeout: let the last block reach the file.
	sleep 1.5
	kill -INT "$pid"
	wait "$pid" || true
	rm -f "$STATE/capture.pid"
	chmod 0644 "$out"
	log "captured $(grep -o '[0-9]* packets captured' "$err" || echo '?') on $P-ua into $out"
}

main() {
	[[ $# -ge 1 ]] || usage
	[[ $EUID -eq 0 ]] || die "must run as root"
	local cmd=$1
	shift
	case $cmd in
	probe) [[ $# -eq 1 ]] || usage && cmd_probe "$1" ;;
	up) [[ $# -eq 2 ]] || usage && set_prefix "$1" && cmd_up "$2" ;;
	down) [[ $# -eq 1 ]] || usage && set_prefix "$1" && cmd_down ;;
	capture) [[ $# -eq 3 ]] || usage && set_prefix "$1" && cmd_capture "$2" "$3" ;;
	*) usage ;;
	esac
}

main "$@"
