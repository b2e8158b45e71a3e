#!/usr/bin/env bash
#
# The lab `outflow check` is proven on: one node, two pods, a cluster DNS that forwards to an
# upstream DNS, a web server, and destinations that are blackholed, refusing and prohibited.
#
#   check.sh up [PREFIX]      build the lab (tears down a previous one of that prefix)
#   check.sh down [PREFIX]    stop its servers and delete its namespaces
#
# PREFIX defaults to "ofc". Everything lives in the namespaces PREFIX-node, PREFIX-pod-a,
# PREFIX-pod-b and PREFIX-net; state (configs, pid files, logs) is in /tmp/PREFIX-check/.
#
#   PREFIX-pod-a 10.244.1.10 --\
#                               br0 10.244.1.1  PREFIX-node  10.224.0.4 ---- 10.224.0.1  PREFIX-net
#   PREFIX-pod-b 10.244.1.11 --/
#
# In PREFIX-net:
#   10.0.0.10      cluster DNS (dnsmasq): cluster.local itself, everything else forwarded to the
#                  upstream, except corp.example, which it wrongly claims (NXDOMAIN): the pods
#                  cannot resolve db.corp.example, the node (which asks the upstream) can
#   10.1.0.53      upstream DNS (dnsmasq), authoritative for example.com and corp.example
#   198.51.100.80  nginx on 80 and 443 (web.example.com, db.corp.example), a self-signed
#                  certificate for web.example.com and www.example.com
#   192.168.50.5   nothing listens: TCP is answered with RST (closed.example.com)
#   198.51.100.20  blackholed in PREFIX-net, beyond the node (blackhole.example.com)
# On the node: 203.0.113.7 is a prohibit route (prohibited.example.com), and a FORWARD rule drops
# pod-b's TCP to 198.51.100.80, as a network policy would, while pod-a and the node get through.
# The pods' resolv.conf is the kubelet's (search list, ndots:5, the cluster DNS); the node's
# names the upstream, as an AKS node's names Azure DNS.

set -euo pipefail

readonly LAB_NAME=check
# shellcheck source=tests/lab/netns.sh
source "${BASH_SOURCE[0]%/*}/netns.sh"

usage() {
	echo "usage: ${0##*/} up|down [PREFIX]" >&2
	exit 2
}

set_prefix() {
	P=$1
	check_prefix "$P"
	NODE=$P-node
	POD_A=$P-pod-a
	POD_B=$P-pod-b
	NET=$P-net
	STATE=/tmp/$P-check
}

# dnsmasq_conf NAME ADDRESS: the start of STATE/NAME.conf, a dnsmasq that reads neither
# /etc/hosts nor /etc/resolv.conf and listens only on ADDRESS; the zone lines follow on stdin.
dnsmasq_conf() {
	local name=$1 address=$2
	{
		cat <<-EOF
			no-resolv
			no-hosts
			no-poll
			bind-interfaces
			listen-address=$address
			pid-file=$STATE/$name.pid
			log-facility=$STATE/$name.log
			log-queries
		EOF
		cat
	} >"$STATE/$name.conf"
}

write_configs() {
	dnsmasq_conf cluster-dns 10.0.0.10 <<-EOF
		local=/cluster.local/
		host-record=api.default.svc.cluster.local,10.244.2.20
		local=/corp.example/
		server=10.1.0.53
	EOF
	dnsmasq_conf upstream-dns 10.1.0.53 <<-EOF
		local=/example.com/
		local=/corp.example/
		host-record=web.example.com,198.51.100.80
		host-record=db.corp.example,198.51.100.80
		host-record=closed.example.com,192.168.50.5
		host-record=blackhole.example.com,198.51.100.20
		host-record=prohibited.example.com,203.0.113.7
	EOF
	# A self-signed certificate for web.example.com: the check must show its names and say it
	# is not trusted, as it would for a TLS-inspecting firewall's.
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-subj /CN=web.example.com -addext subjectAltName=DNS:web.example.com,DNS:www.example.com \
		-keyout "$STATE/web.key" -out "$STATE/web.crt" 2>"$STATE/openssl.log"
	nginx_conf "$STATE" "
        listen 198.51.100.80:80;
        listen 198.51.100.80:443 ssl;
        ssl_certificate $STATE/web.crt;
        ssl_certificate_key $STATE/web.key;"'
        location = / { return 200 "ok\n"; }
        location = /broken { return 503; }'
}

ns_add() {
	ip netns add "$1"
	ip -n "$1" link set lo up
}

add_pod() {
	local ns=$1 addr=$2 veth=$3
	ns_add "$ns"
	ip -n "$NODE" link add "$veth" type veth peer name eth0 netns "$ns"
	ip -n "$NODE" link set "$veth" master br0 up
	ip -n "$ns" addr add "$addr/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via 10.244.1.1
	mkdir -p "/etc/netns/$ns"
	cat >"/etc/netns/$ns/resolv.conf" <<-EOF
		search default.svc.cluster.local svc.cluster.local cluster.local
		nameserver 10.0.0.10
		options ndots:5
	EOF
}

build_topology() {
	ns_add "$NODE"
	ns_add "$NET"
	nsx "$NODE" sysctl -qw net.ipv4.ip_forward=1
	ip -n "$NODE" link add br0 type bridge stp_state 0 forward_delay 0
	ip -n "$NODE" addr add 10.244.1.1/24 dev br0
	ip -n "$NODE" link set br0 up
	add_pod "$POD_A" 10.244.1.10 "$P-veth-a"
	add_pod "$POD_B" 10.244.1.11 "$P-veth-b"

	ip -n "$NODE" link add "$P-uplink" type veth peer name "$P-to-node" netns "$NET"
	ip -n "$NODE" addr add 10.224.0.4/24 dev "$P-uplink"
	ip -n "$NODE" link set "$P-uplink" up
	ip -n "$NET" addr add 10.224.0.1/24 dev "$P-to-node"
	ip -n "$NET" link set "$P-to-node" up
	ip -n "$NODE" route add default via 10.224.0.1
	ip -n "$NODE" route add prohibit 203.0.113.7/32
	mkdir -p "/etc/netns/$NODE"
	echo "nameserver 10.1.0.53" >"/etc/netns/$NODE/resolv.conf"
	# A network policy's effect: pod-b's web traffic is dropped where the node forwards it.
	nsx "$NODE" iptables -I FORWARD -s 10.244.1.11 -d 198.51.100.80 -p tcp --dport 80 -j DROP

	# Forwarding on in the network, so that 198.51.100.20 is routed, into the blackhole.
	nsx "$NET" sysctl -qw net.ipv4.ip_forward=1
	local a
	for a in 10.0.0.10 10.1.0.53 198.51.100.80 192.168.50.5; do
		ip -n "$NET" addr add "$a/32" dev lo
	done
	ip -n "$NET" route add 10.244.0.0/16 via 10.224.0.4
	ip -n "$NET" route add blackhole 198.51.100.20/32
}

start_servers() {
	nsx "$NET" dnsmasq --conf-file="$STATE/upstream-dns.conf"
	nsx "$NET" dnsmasq --conf-file="$STATE/cluster-dns.conf"
	wait_until 50 eval "[[ \$(nsx $NET ss -Hlnu 'sport = :53' | wc -l) -ge 2 ]]" || die "dnsmasq is not listening, see $STATE/*-dns.log"
	nsx "$NET" nginx -p "$STATE" -c "$STATE/nginx.conf" -e "$STATE/nginx-error.log"
	wait_until 50 listening "$NET" t 80 || die "nginx is not listening, see $STATE/nginx-error.log"
}

verify() {
	local out
	out=$(nsx "$POD_A" dig +short +time=2 +tries=1 @10.0.0.10 web.example.com A || true)
	expect "cluster DNS forwards web.example.com" 198.51.100.80 "$out"
	out=$(nsx "$NODE" dig +short +time=2 +tries=1 @10.1.0.53 db.corp.example A || true)
	expect "upstream knows db.corp.example" 198.51.100.80 "$out"
	out=$(nsx "$POD_A" curl -s -o /dev/null -w '%{http_code}' --connect-timeout 2 http://198.51.100.80/ || true)
	expect "pod-a GET http://198.51.100.80/" 200 "$out"
}

cmd_down() {
	stop_pidfile "$STATE/nginx.pid" nginx
	stop_pidfile "$STATE/cluster-dns.pid" dnsmasq
	stop_pidfile "$STATE/upstream-dns.pid" dnsmasq
	delete_namespaces "$POD_A" "$POD_B" "$NODE" "$NET"
	log "lab $P is down"
}

main() {
	[[ $# -ge 1 && $# -le 2 ]] || usage
	[[ $EUID -eq 0 ]] || die "must run as root"
	set_prefix "${2:-ofc}"
	case $1 in
	up) cmd_up ;;
	down) cmd_down ;;
	*) usage ;;
	esac
}

main "$@"
