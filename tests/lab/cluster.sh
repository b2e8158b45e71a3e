#!/usr/bin/env bash
#
# A lab of network namespaces that stands in for a two-node cluster: pods in two namespaces on
# each node, a cluster DNS that forwards to an upstream resolver, and a router that hosts the
# public destinations. Faults are switched on one at a time, so a test can check that each
# yields its diagnosis and nothing else (cli/tests/diagnoses_lab.rs).
#
#   cluster.sh up [PREFIX]                 build the lab (tears down a previous one of that prefix)
#   cluster.sh down [PREFIX]               stop its servers and delete its namespaces
#   cluster.sh traffic [PREFIX]            every pod but the DNS looks up and fetches each public name
#   cluster.sh scenario [PREFIX] NAME      switch one fault on (healthy switches them all off)
#   cluster.sh inventory [PREFIX] NODE     print the inventory file of node a or b
#
# PREFIX defaults to "ofc"; at most 7 characters. Nothing is configured in the namespace the
# script is started from; state (configs, pid files, logs) is kept in /tmp/PREFIX-lab/.
#
#   PREFIX-node-a  br0 10.244.1.1/24                            PREFIX-net (the router)
#     shop/web-a          10.244.1.10  PREFIX-vwa                 PREFIX-dst (dummy, or lo):
#     pay/api-a           10.244.1.11  PREFIX-vaa                   10.99.0.53     upstream DNS
#     kube-system/coredns 10.244.1.53  PREFIX-vdns                  198.51.100.10  api.example.com
#     PREFIX-up 10.224.1.4/24  ------------------  PREFIX-na 10.224.1.1/24
#                                                                   198.51.100.11  cdn.example.com
#   PREFIX-node-b  br0 10.244.2.1/24                                198.51.100.12  shop.example.com
#     shop/web-b          10.244.2.10  PREFIX-vwb                 nginx answers port 80 on each
#     pay/api-b           10.244.2.11  PREFIX-vab
#     PREFIX-up 10.224.2.4/24  ------------------  PREFIX-nb 10.224.2.1/24
#
# Every pod's resolver is the cluster DNS 10.244.1.53 (pods on node b reach it through the
# router), a dnsmasq without cache that forwards every query to 10.99.0.53, so each lookup a pod
# makes is also the cluster DNS's own lookup upstream. Pod-side interfaces are the pod
# namespaces' eth0; the node side's are named PREFIX-v..., for the agents' --iface-prefix.
#
# Scenarios (each first switches the others off; iptables in the lab's namespaces only):
#   healthy             nothing broken
#   upstream-dead       PREFIX-net drops DNS to 10.99.0.53: the upstream resolver never answers
#   blackhole-one       PREFIX-net drops everything to 198.51.100.11 (cdn.example.com)
#   node-egress         node a drops what its pods forward to 198.51.100.0/24
#   namespace-blocked   both nodes drop what the shop pods send to 198.51.100.0/24
#   refusing            PREFIX-net answers TCP to 198.51.100.12:80 with a reset

set -euo pipefail

readonly LAB_NAME=cluster
# shellcheck source=tests/lab/netns.sh
source "${BASH_SOURCE[0]%/*}/netns.sh"

readonly NAMES=(api.example.com cdn.example.com shop.example.com)

usage() {
	cat >&2 <<-EOF
		usage: ${0##*/} up [PREFIX]
		       ${0##*/} down [PREFIX]
		       ${0##*/} traffic [PREFIX]
		       ${0##*/} scenario [PREFIX] healthy|upstream-dead|blackhole-one|node-egress|namespace-blocked|refusing
		       ${0##*/} inventory [PREFIX] a|b
	EOF
	exit 2
}

# Pods: "netns-suffix node namespace name address veth-suffix workload".
readonly PODS=(
	"web-a a shop web-a 10.244.1.10 wa deployment/web"
	"api-a a pay api-a 10.244.1.11 aa deployment/api"
	"dns a kube-system coredns 10.244.1.53 dns deployment/coredns"
	"web-b b shop web-b 10.244.2.10 wb deployment/web"
	"api-b b pay api-b 10.244.2.11 ab deployment/api"
)

# Sets the names derived from the prefix. Interface names are at most 15 characters; the longest
# is PREFIX-vdns, hence at most 7 characters of prefix.
set_prefix() {
	P=$1
	check_prefix "$P"
	NET=$P-net
	STATE=/tmp/$P-lab
}

# Every namespace of the lab, the pods' first.
namespaces() {
	local pod
	for pod in "${PODS[@]}"; do
		read -r ns _ <<<"$pod"
		echo "$P-$ns"
	done
	echo "$P-node-a" "$P-node-b" "$NET"
}

# A namespace with IPv4 only: the lab is about IPv4, and no router solicitation or DAD adds noise.
ns_defaults() {
	local ns=$1
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
}

# --- up ----------------------------------------------------------------------------------------

write_configs() {
	# Given as --conf-file, so /etc/dnsmasq.conf is not read; no-hosts and no-resolv keep
	# /etc/hosts and /etc/resolv.conf out of both.
	cat >"$STATE/upstream.conf" <<-EOF
		# The upstream resolver, outside the cluster.
		no-resolv
		no-hosts
		no-poll
		bind-interfaces
		listen-address=10.99.0.53
		pid-file=$STATE/upstream.pid
		log-facility=$STATE/upstream.log
		log-queries
		local=/example.com/
		host-record=api.example.com,198.51.100.10
		host-record=cdn.example.com,198.51.100.11
		host-record=shop.example.com,198.51.100.12
	EOF
	cat >"$STATE/coredns.conf" <<-EOF
		# The cluster DNS: no cache, so every pod lookup is also its own lookup upstream.
		no-resolv
		no-hosts
		no-poll
		bind-interfaces
		listen-address=10.244.1.53
		cache-size=0
		server=10.99.0.53
		pid-file=$STATE/coredns.pid
		log-facility=$STATE/coredns.log
		log-queries
	EOF

	nginx_conf "$STATE" '
        listen 198.51.100.10:80;
        listen 198.51.100.11:80;
        listen 198.51.100.12:80;
        location = / { return 200 "ok\n"; }'
}

# build_node a|b N: node namespace with its bridge 10.244.N.1/24 and uplink 10.224.N.4/24.
build_node() {
	local x=$1 n=$2 node=$P-node-$1
	ns_defaults "$node"
	nsx "$node" sysctl -qw net.ipv4.ip_forward=1
	ip -n "$node" link add br0 type bridge stp_state 0 forward_delay 0
	ip -n "$node" addr add "10.244.$n.1/24" dev br0
	ip -n "$node" link set br0 up
	ip -n "$node" link add "$P-up" type veth peer name "$P-n$x" netns "$NET"
	ip -n "$node" addr add "10.224.$n.4/24" dev "$P-up"
	ip -n "$node" link set "$P-up" up
	ip -n "$NET" addr add "10.224.$n.1/24" dev "$P-n$x"
	ip -n "$NET" link set "$P-n$x" up
	ip -n "$node" route add default via "10.224.$n.1"
	ip -n "$NET" route add "10.244.$n.0/24" via "10.224.$n.4"
}

# build_pod NETNS-SUFFIX NODE ADDRESS VETH-SUFFIX: a pod on its node's bridge, the cluster DNS
# as its resolver.
build_pod() {
	local ns=$P-$1 node=$P-node-$2 addr=$3 veth=$P-v$4 gw
	gw=${addr%.*}.1
	ns_defaults "$ns"
	ip -n "$node" link add "$veth" type veth peer name eth0 netns "$ns"
	ip -n "$node" link set "$veth" master br0 up
	ip -n "$ns" addr add "$addr/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$gw"
	# ip netns exec bind-mounts files from /etc/netns/NAME/ over /etc/.
	mkdir -p "/etc/netns/$ns"
	cat >"/etc/netns/$ns/resolv.conf" <<-EOF
		nameserver 10.244.1.53
		options timeout:1 attempts:1
	EOF
}

build_topology() {
	ns_defaults "$NET"
	nsx "$NET" sysctl -qw net.ipv4.ip_forward=1
	# Kernels built without CONFIG_DUMMY get the addresses on lo instead; local delivery is the
	# same either way.
	local dev=$P-dst a
	if ! ip -n "$NET" link add "$dev" type dummy 2>/dev/null; then
		log "no dummy interfaces in this kernel, destinations go on lo in $NET"
		dev=lo
	fi
	for a in 10.99.0.53 198.51.100.10 198.51.100.11 198.51.100.12; do
		ip -n "$NET" addr add "$a/32" dev "$dev"
	done
	ip -n "$NET" link set "$dev" up
	build_node a 1
	build_node b 2
	local pod ns node _namespace _name addr veth _workload
	for pod in "${PODS[@]}"; do
		read -r ns node _namespace _name addr veth _workload <<<"$pod"
		build_pod "$ns" "$node" "$addr" "$veth"
	done
}

start_servers() {
	nsx "$NET" dnsmasq --conf-file="$STATE/upstream.conf"
	wait_until 50 listening "$NET" u 53 || die "the upstream dnsmasq is not listening, see $STATE/upstream.log"
	nsx "$P-dns" dnsmasq --conf-file="$STATE/coredns.conf"
	wait_until 50 listening "$P-dns" u 53 || die "the cluster dnsmasq is not listening, see $STATE/coredns.log"
	nsx "$NET" nginx -p "$STATE" -c "$STATE/nginx.conf" -e "$STATE/nginx-error.log"
	wait_until 50 listening "$NET" t 80 || die "nginx is not listening, see $STATE/nginx-error.log"
}

# From a pod on each node: the name resolves through the cluster DNS and its server answers.
# Every pod first knocks on a closed port of its gateway (answered by a reset), so that its
# node's bridge has learnt which port the pod is on.
verify() {
	local pod ns node _namespace _name addr out
	for pod in "${PODS[@]}"; do
		read -r ns node _namespace _name addr _ <<<"$pod"
		nsx "$P-$ns" bash -c ": 2>/dev/null >/dev/tcp/${addr%.*}.1/9" || true
	done
	for ns in "$P-web-a" "$P-api-b"; do
		out=$(nsx "$ns" dig +short +time=2 +tries=1 cdn.example.com A || true)
		expect "$ns: A cdn.example.com" 198.51.100.11 "$out"
		out=$(nsx "$ns" curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://shop.example.com/ || true)
		expect "$ns: GET http://shop.example.com/" 200 "$out"
	done
}

# --- down --------------------------------------------------------------------------------------

cmd_down() {
	stop_pidfile "$STATE/nginx.pid" nginx
	stop_pidfile "$STATE/coredns.pid" dnsmasq
	stop_pidfile "$STATE/upstream.pid" dnsmasq
	delete_namespaces $(namespaces)
	log "lab $P is down"
}

# --- traffic -----------------------------------------------------------------------------------

# One pod's clients: each name looked up and fetched twice. Failures are what the scenarios are
# for, so exit statuses are ignored; curl resolves through the cluster DNS like the pod's
# applications would.
pod_traffic() {
	local ns=$1 round name
	for round in 1 2; do
		for name in "${NAMES[@]}"; do
			nsx "$ns" dig +time=1 +tries=1 "$name" A >/dev/null 2>&1 || true
			nsx "$ns" curl -s -o /dev/null --connect-timeout 1 --max-time 2 "http://$name/" || true
		done
	done
}

cmd_traffic() {
	ns_exists "$NET" || die "lab $P is not up"
	local t0=$SECONDS pod ns pids=()
	for pod in "${PODS[@]}"; do
		read -r ns _ <<<"$pod"
		[[ $ns == dns ]] && continue
		pod_traffic "$P-$ns" &
		pids+=($!)
	done
	wait "${pids[@]}"
	log "traffic done ($((SECONDS - t0)) s)"
}

# --- scenario ----------------------------------------------------------------------------------

# Rules go in a chain of the lab's own in each namespace, so switching off is flushing it.
fault_chain() {
	local ns=$1 hook=$2
	nsx "$ns" iptables -N "$P-fault" 2>/dev/null || nsx "$ns" iptables -F "$P-fault"
	nsx "$ns" iptables -C "$hook" -j "$P-fault" 2>/dev/null || nsx "$ns" iptables -I "$hook" -j "$P-fault"
}

fault() {
	local ns=$1
	shift
	nsx "$ns" iptables -A "$P-fault" "$@"
}

cmd_scenario() {
	local name=$1
	ns_exists "$NET" || die "lab $P is not up"
	fault_chain "$NET" INPUT
	fault_chain "$P-node-a" FORWARD
	fault_chain "$P-node-b" FORWARD
	case $name in
	healthy) ;;
	upstream-dead)
		fault "$NET" -d 10.99.0.53 -p udp --dport 53 -j DROP
		fault "$NET" -d 10.99.0.53 -p tcp --dport 53 -j DROP
		;;
	blackhole-one) fault "$NET" -d 198.51.100.11 -j DROP ;;
	node-egress) fault "$P-node-a" -s 10.244.1.0/24 -d 198.51.100.0/24 -j DROP ;;
	namespace-blocked)
		fault "$P-node-a" -s 10.244.1.10 -d 198.51.100.0/24 -j DROP
		fault "$P-node-b" -s 10.244.2.10 -d 198.51.100.0/24 -j DROP
		;;
	refusing) fault "$NET" -d 198.51.100.12 -p tcp --dport 80 -j REJECT --reject-with tcp-reset ;;
	*) usage ;;
	esac
	log "scenario $name"
}

# --- inventory ---------------------------------------------------------------------------------

# The agents' inventory file of one node: its pods with their namespaces and workloads.
cmd_inventory() {
	local want=$1 pod ns node namespace name addr veth workload
	[[ $want == a || $want == b ]] || usage
	echo "pods:"
	for pod in "${PODS[@]}"; do
		read -r ns node namespace name addr veth workload <<<"$pod"
		[[ $node == "$want" ]] || continue
		echo "- {namespace: $namespace, name: $name, ips: [$addr], workload: $workload}"
	done
}

# --- main --------------------------------------------------------------------------------------

main() {
	[[ $# -ge 1 ]] || usage
	[[ $EUID -eq 0 ]] || die "must run as root"
	local cmd=$1
	shift
	case $cmd in
	up | down | traffic)
		[[ $# -le 1 ]] || usage
		set_prefix "${1:-ofc}"
		"cmd_$cmd"
		;;
	scenario | inventory)
		case $# in
		1) set_prefix ofc && "cmd_$cmd" "$1" ;;
		2) set_prefix "$1" && "cmd_$cmd" "$2" ;;
		*) usage ;;
		esac
		;;
	*) usage ;;
	esac
}

main "$@"
