#!/usr/bin/env bash
#
# A lab of network namespaces that stands in for one Kubernetes node, one pod on it and the
# networks the pod talks to. It produces the packet captures under core/tests/fixtures/.
#
#   lab.sh up [PREFIX]                build the lab (tears down a previous one of that prefix)
#   lab.sh down [PREFIX]              stop its servers and delete its namespaces
#   lab.sh traffic [PREFIX]           run the client traffic from the pod
#   lab.sh capture [PREFIX] OUTDIR    capture on the node while the traffic runs
#
# PREFIX defaults to "of"; labs with different prefixes coexist. Everything lives in the
# namespaces PREFIX-node, PREFIX-pod-a and PREFIX-net, nothing is configured in the namespace the
# script is started from. State (configs, pid files, logs) is kept in /tmp/PREFIX-lab/.
#
#   PREFIX-pod-a                PREFIX-node                           PREFIX-net
#   eth0 10.244.1.10/24  ----   PREFIX-veth-a                         PREFIX-dst (dummy, or lo):
#        fd00:244:1::10/64      br0 10.244.1.1/24  fd00:244:1::1/64     destinations as /32, /128
#                               PREFIX-uplink  ------------------  PREFIX-to-node
#                                 10.224.0.4/24 fd00:224::4/64        10.224.0.1/24 fd00:224::1/64
#
# Destinations in PREFIX-net:
#   10.0.0.10, fd00:10::10       dnsmasq, the cluster DNS (UDP and TCP 53)
#   198.51.100.80, fd00:80::80   nginx, "public" web.example.com
#   10.244.2.20                  nginx, a pod on another node (api.default.svc.cluster.local)
#   10.10.0.5                    nginx, a peered VNet (peer.example.com)
#   192.168.50.5                 "on-prem", nothing listens: TCP 8080 is answered with RST
#   10.224.0.1:3128              tinyproxy with basic auth, if tinyproxy is installed
#   10.0.0.99                    blackholed in PREFIX-net: a DNS server that never answers
# The node itself blackholes 198.51.100.20 (silent drop) and prohibits 203.0.113.7 (ICMP
# destination unreachable, code 13 "communication administratively prohibited").

set -euo pipefail

readonly LAB_NAME=lab
# shellcheck source=tests/lab/netns.sh
source "${BASH_SOURCE[0]%/*}/netns.sh"

readonly PROXY_USER=user
readonly PROXY_PASS=pass

usage() {
	cat >&2 <<-EOF
		usage: ${0##*/} up [PREFIX]
		       ${0##*/} down [PREFIX]
		       ${0##*/} traffic [PREFIX]
		       ${0##*/} capture [PREFIX] OUTDIR
	EOF
	exit 2
}

# Sets the names derived from the prefix. Interface names are at most 15 characters; the longest
# is PREFIX-to-node, hence at most 7 characters of prefix.
set_prefix() {
	P=$1
	check_prefix "$P"
	NODE=$P-node
	POD=$P-pod-a
	NET=$P-net
	VETH=$P-veth-a
	UPLINK=$P-uplink
	DOWNLINK=$P-to-node
	DST=$P-dst
	STATE=/tmp/$P-lab
	POD_ETC=/etc/netns/$POD
}

sysctl_ns() {
	local ns=$1
	shift
	nsx "$ns" sysctl -qw "$@"
}

# --- up ----------------------------------------------------------------------------------------

write_configs() {
	cat >"$STATE/dnsmasq.conf" <<-EOF
		# Cluster DNS. Given as --conf-file, so /etc/dnsmasq.conf is not read; no-hosts and
		# no-resolv keep /etc/hosts and /etc/resolv.conf out of it.
		no-resolv
		no-hosts
		no-poll
		bind-interfaces
		listen-address=10.0.0.10
		listen-address=fd00:10::10
		port=53
		pid-file=$STATE/dnsmasq.pid
		log-facility=$STATE/dnsmasq.log
		log-queries
		local-ttl=30
		local=/cluster.local/
		local=/example.com/
		host-record=web.example.com,198.51.100.80,fd00:80::80
		host-record=api.default.svc.cluster.local,10.244.2.20
		host-record=peer.example.com,10.10.0.5
		# 10.0.0.99 is blackholed in the net namespace, so dnsmasq's send fails at once (EINVAL)
		# and nothing leaves it. Observed with dnsmasq 2.90: the client gets REFUSED with EDE 23
		# (network error) within a millisecond, not SERVFAIL and not a timeout.
		server=/dead.example/10.0.0.99
	EOF

	nginx_conf "$STATE" '
        listen 198.51.100.80:80;
        listen [fd00:80::80]:80;
        listen 10.244.2.20:80;
        listen 10.10.0.5:80;
        location = / { return 200 "ok\n"; }
        location = /forbidden { return 403; }
        location = /broken { return 503; }'

	# No User/Group: tinyproxy opens its log after dropping privileges and could not write to
	# the root-owned state directory.
	cat >"$STATE/tinyproxy.conf" <<-EOF
		Port 3128
		Listen 10.224.0.1
		Timeout 30
		MaxClients 16
		LogFile "$STATE/tinyproxy.log"
		LogLevel Info
		PidFile "$STATE/tinyproxy.pid"
		Allow 10.244.0.0/16
		BasicAuth $PROXY_USER $PROXY_PASS
		ConnectPort 80
		DisableViaHeader Yes
	EOF
}

# Per-namespace defaults, set before any interface exists there: no DAD (addresses are usable at
# once, no tentative state to wait for) and no router solicitations (keeps the captures quiet).
ns_defaults() {
	local ns=$1
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	sysctl_ns "$ns" net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	sysctl_ns "$ns" net.ipv6.conf.all.router_solicitations=0 net.ipv6.conf.default.router_solicitations=0
	sysctl_ns "$ns" net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0
}

build_topology() {
	ns_defaults "$NODE"
	ns_defaults "$POD"
	ns_defaults "$NET"

	# Node: bridge for its pods, uplink towards the network, routing between them.
	sysctl_ns "$NODE" net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
	ip -n "$NODE" link add br0 address 0a:58:0a:f4:01:01 type bridge stp_state 0 forward_delay 0
	ip -n "$NODE" addr add 10.244.1.1/24 dev br0
	ip -n "$NODE" addr add fd00:244:1::1/64 dev br0 nodad
	ip -n "$NODE" link set br0 up

	# Pod: the CNI-style veth, host end on the bridge without addresses of its own.
	ip -n "$NODE" link add "$VETH" address 02:00:0a:f4:01:0a type veth \
		peer name eth0 address 0a:58:0a:f4:01:0a netns "$POD"
	sysctl_ns "$NODE" "net.ipv6.conf.$VETH.disable_ipv6=1"
	ip -n "$NODE" link set "$VETH" master br0 up
	ip -n "$POD" addr add 10.244.1.10/24 dev eth0
	ip -n "$POD" addr add fd00:244:1::10/64 dev eth0 nodad
	ip -n "$POD" link set eth0 up
	ip -n "$POD" route add default via 10.244.1.1
	ip -n "$POD" -6 route add default via fd00:244:1::1

	# Uplink between node and network.
	ip -n "$NODE" link add "$UPLINK" address 02:00:0a:e0:00:04 type veth \
		peer name "$DOWNLINK" address 02:00:0a:e0:00:01 netns "$NET"
	ip -n "$NODE" addr add 10.224.0.4/24 dev "$UPLINK"
	ip -n "$NODE" addr add fd00:224::4/64 dev "$UPLINK" nodad
	ip -n "$NODE" link set "$UPLINK" up
	ip -n "$NET" addr add 10.224.0.1/24 dev "$DOWNLINK"
	ip -n "$NET" addr add fd00:224::1/64 dev "$DOWNLINK" nodad
	ip -n "$NET" link set "$DOWNLINK" up
	ip -n "$NODE" route add default via 10.224.0.1
	ip -n "$NODE" -6 route add default via fd00:224::1
	ip -n "$NODE" route add blackhole 198.51.100.20/32
	ip -n "$NODE" route add prohibit 203.0.113.7/32

	# Network: every destination on one dummy interface, routes back to the pod CIDRs.
	# Forwarding is on only so that the blackhole route is what drops 10.0.0.99.
	# Kernels built without CONFIG_DUMMY get the addresses on lo instead; local delivery is the
	# same either way.
	sysctl_ns "$NET" net.ipv4.ip_forward=1
	local dev=$DST a
	if ! ip -n "$NET" link add "$DST" type dummy 2>/dev/null; then
		log "no dummy interfaces in this kernel, destinations go on lo in $NET"
		dev=lo
	fi
	for a in 10.0.0.10/32 198.51.100.80/32 10.244.2.20/32 10.10.0.5/32 192.168.50.5/32; do
		ip -n "$NET" addr add "$a" dev "$dev"
	done
	for a in fd00:10::10/128 fd00:80::80/128; do
		ip -n "$NET" addr add "$a" dev "$dev" nodad
	done
	ip -n "$NET" link set "$dev" up
	ip -n "$NET" route add 10.244.0.0/16 via 10.224.0.4
	ip -n "$NET" -6 route add fd00:244::/32 via fd00:224::4
	ip -n "$NET" route add blackhole 10.0.0.99/32

	# The pod's /etc/resolv.conf and /etc/hosts, as the kubelet writes them. ip netns exec
	# bind-mounts files from /etc/netns/NAME/ over /etc/.
	mkdir -p "$POD_ETC"
	cat >"$POD_ETC/resolv.conf" <<-EOF
		search default.svc.cluster.local svc.cluster.local cluster.local
		nameserver 10.0.0.10
		options ndots:5
	EOF
	cat >"$POD_ETC/hosts" <<-EOF
		127.0.0.1	localhost
		::1	localhost ip6-localhost ip6-loopback
		10.244.1.10	pod-a
	EOF
}

start_servers() {
	nsx "$NET" dnsmasq --conf-file="$STATE/dnsmasq.conf"
	wait_until 50 listening "$NET" u 53 || die "dnsmasq is not listening, see $STATE/dnsmasq.log"
	wait_until 50 listening "$NET" t 53 || die "dnsmasq is not listening on TCP"

	nsx "$NET" nginx -p "$STATE" -c "$STATE/nginx.conf" -e "$STATE/nginx-error.log"
	wait_until 50 listening "$NET" t 80 || die "nginx is not listening, see $STATE/nginx-error.log"

	if command -v tinyproxy >/dev/null; then
		nsx "$NET" tinyproxy -c "$STATE/tinyproxy.conf" 2>>"$STATE/tinyproxy.log"
		wait_until 50 listening "$NET" t 3128 || die "tinyproxy is not listening, see $STATE/tinyproxy.log"
	else
		log "tinyproxy is not installed; the proxy traffic will be skipped"
	fi
}

# Checks the servers and, on the wire, that the node drops 198.51.100.20 silently and answers
# 203.0.113.7 with ICMP type 3 code 13.
verify() {
	local rc out
	out=$(nsx "$POD" dig +short +time=2 +tries=1 @10.0.0.10 web.example.com A || true)
	expect "A web.example.com" 198.51.100.80 "$out"
	out=$(nsx "$POD" dig +short +time=2 +tries=1 @fd00:10::10 api.default.svc.cluster.local A || true)
	expect "A api.default.svc.cluster.local" 10.244.2.20 "$out"
	out=$({ nsx "$POD" dig +time=2 +tries=1 @10.0.0.10 nx.example.com A || true; } | sed -n 's/.*status: \([A-Z]*\),.*/\1/p')
	expect "rcode nx.example.com" NXDOMAIN "$out"
	out=$(nsx "$POD" curl -s -o /dev/null -w '%{http_code}' http://198.51.100.80/broken || true)
	expect "GET http://198.51.100.80/broken" 503 "$out"
	out=$(nsx "$POD" curl -s -o /dev/null -w '%{http_code}' -g 'http://[fd00:80::80]/' || true)
	expect "GET http://[fd00:80::80]/" 200 "$out"

	local pcap=$STATE/verify.pcap
	rm -f "$pcap"
	env --default-signal=INT ip netns exec "$NODE" tcpdump -i any -n -U -B 8192 -Z root -w "$pcap" \
		'icmp or host 198.51.100.20 or host 203.0.113.7 or host 192.168.50.5' 2>"$STATE/verify-tcpdump.log" &
	local tcpdump_pid=$!
	wait_until 100 grep -q 'listening on' "$STATE/verify-tcpdump.log" || die "tcpdump did not start"

	rc=0
	nsx "$POD" curl -s -o /dev/null --connect-timeout 2 http://198.51.100.20/ || rc=$?
	expect "curl 198.51.100.20 exit status (timeout)" 28 "$rc"
	rc=0
	nsx "$POD" curl -s -o /dev/null --connect-timeout 2 http://203.0.113.7/ || rc=$?
	expect "curl 203.0.113.7 exit status (cannot connect)" 7 "$rc"
	rc=0
	nsx "$POD" curl -s -o /dev/null --connect-timeout 2 http://192.168.50.5:8080/ || rc=$?
	expect "curl 192.168.50.5:8080 exit status (cannot connect)" 7 "$rc"
	sleep 2
	kill -INT "$tcpdump_pid"
	wait "$tcpdump_pid" || true

	out=$(tshark -r "$pcap" -Y 'icmp.type == 3 && icmp.code == 13 && ip.src == 10.244.1.1 && ip.dst == 203.0.113.7' 2>/dev/null | wc -l)
	[[ $out -ge 1 ]] || die "check failed: no ICMP administratively prohibited for 203.0.113.7"
	log "ok: node answers 203.0.113.7 with ICMP 3/13 ($out copies in the capture)"
	out=$(tshark -r "$pcap" -Y 'ip.src == 198.51.100.20 || (icmp && ip.dst == 198.51.100.20)' 2>/dev/null | wc -l)
	expect "packets from or about 198.51.100.20" 0 "$out"
	out=$(tshark -r "$pcap" -Y 'ip.dst == 198.51.100.20 && tcp.flags.syn == 1' 2>/dev/null | wc -l)
	[[ $out -ge 1 ]] || die "check failed: no SYN towards 198.51.100.20 seen"
	out=$(tshark -r "$pcap" -Y 'ip.src == 192.168.50.5 && tcp.flags.reset == 1' 2>/dev/null | wc -l)
	[[ $out -ge 1 ]] || die "check failed: no RST from 192.168.50.5"
	log "ok: 198.51.100.20 dropped silently, 192.168.50.5:8080 refused with RST"
	rm -f "$pcap"

	if command -v tinyproxy >/dev/null; then
		out=$(nsx "$POD" curl -s -o /dev/null -w '%{http_connect}' -p -x http://10.224.0.1:3128 http://198.51.100.80/ || true)
		expect "CONNECT without credentials" 407 "$out"
		out=$(nsx "$POD" curl -s -o /dev/null -w '%{http_connect} %{http_code}' -p \
			-x "http://$PROXY_USER:$PROXY_PASS@10.224.0.1:3128" http://198.51.100.80/ || true)
		expect "CONNECT with credentials, then GET" "200 200" "$out"
	fi
}

# --- down --------------------------------------------------------------------------------------

cmd_down() {
	local f
	# Captures left behind by an interrupted "capture".
	for f in "$STATE"/capture-*.pid; do
		[[ -e $f ]] || continue
		stop_pidfile "$f" "$(basename "$f" .pid | sed 's/^capture-[^-]*-//')"
	done
	stop_pidfile "$STATE/tinyproxy.pid" tinyproxy
	stop_pidfile "$STATE/nginx.pid" nginx
	stop_pidfile "$STATE/dnsmasq.pid" dnsmasq
	delete_namespaces "$POD" "$NODE" "$NET"
	log "lab $P is down"
}

# --- traffic -----------------------------------------------------------------------------------

# Runs one client command in the pod; failures are expected and only logged.
step() {
	local n=$1 rc=0
	shift
	log "step $n: $*"
	nsx "$POD" "$@" >&2 || rc=$?
	log "step $n: exit status $rc"
	sleep 1
}

cmd_traffic() {
	ns_exists "$POD" || die "lab $P is not up"
	step 1 curl -s -o /dev/null http://web.example.com/
	step 2 curl -s -o /dev/null http://web.example.com/forbidden
	step 3 curl -s -o /dev/null http://web.example.com/broken
	step 4 curl -s -o /dev/null http://nx.example.com/
	step 5 curl -s -o /dev/null http://api.default.svc.cluster.local/
	step 6 curl -s -o /dev/null http://peer.example.com/
	step 7 curl -s -o /dev/null --connect-timeout 5 http://198.51.100.20/
	step 8 curl -s -o /dev/null --connect-timeout 5 http://203.0.113.7/
	step 9 curl -s -o /dev/null --connect-timeout 5 http://192.168.50.5:8080/
	step 10 dig +time=2 +tries=1 @10.0.0.10 servfail.dead.example
	step 11 dig +time=2 +tries=1 @10.0.0.99 web.example.com
	step 12 dig +tcp @10.0.0.10 web.example.com
	step 13 dig @fd00:10::10 AAAA web.example.com
	step 13 curl -s -o /dev/null -g 'http://[fd00:80::80]/'
	if [[ -s $STATE/tinyproxy.pid ]]; then
		step 14 curl -s -o /dev/null -p -x http://10.224.0.1:3128 http://198.51.100.80/
		step 14 curl -s -o /dev/null -p -x "http://$PROXY_USER:$PROXY_PASS@10.224.0.1:3128" http://198.51.100.80/
	else
		log "step 14: no tinyproxy, skipped"
	fi
}

# --- capture -----------------------------------------------------------------------------------

CAPTURE_PIDS=()

# start_capture NAME READY-PATTERN CMD...: starts CMD in the node namespace and waits until its
# stderr says it is capturing. SIGINT is restored to its default, as background jobs of a
# non-interactive shell would otherwise inherit it ignored.
start_capture() {
	local name=$1 ready=$2 err pid
	shift 2
	err=$STATE/capture-$name.log
	: >"$err"
	env --default-signal=INT ip netns exec "$NODE" "$@" 2>"$err" &
	pid=$!
	CAPTURE_PIDS+=("$pid")
	echo "$pid" >"$STATE/capture-$name-$1.pid"
	if ! wait_until 100 grep -q "$ready" "$err"; then
		cat "$err" >&2
		die "$1 ($name) did not start"
	fi
	log "capturing: $name ($1, pid $pid)"
}

stop_captures() {
	local pid
	for pid in "${CAPTURE_PIDS[@]}"; do
		kill -INT "$pid" 2>/dev/null || true
	done
	for pid in "${CAPTURE_PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	CAPTURE_PIDS=()
	rm -f "$STATE"/capture-*.pid
}

cmd_capture() {
	local out=$1 t0=$SECONDS
	ns_exists "$NODE" || die "lab $P is not up"
	mkdir -p "$out"
	out=$(realpath "$out")
	rm -f "$out/pod-veth.pcap" "$out/node-any.pcapng" "$out/node-any-sll2.pcap"
	# Start from empty neighbour tables, so that every capture holds its own ARP and NDP and no
	# NUD probe left over from earlier traffic fires during it.
	ip -n "$POD" neigh flush all
	ip -n "$NODE" neigh flush all
	ip -n "$NET" neigh flush all

	trap stop_captures EXIT
	trap 'exit 130' INT TERM
	start_capture veth 'listening on' \
		tcpdump -i "$VETH" -n -U -B 8192 -Z root -w "$out/pod-veth.pcap"
	start_capture any 'Capturing on' \
		dumpcap -i any -q -w "$out/node-any.pcapng"
	start_capture sll2 'listening on' \
		tcpdump -i any -y LINUX_SLL2 -n -U -B 8192 -Z root -w "$out/node-any-sll2.pcap"
	sleep 1
	cmd_traffic
	# Late packets (FIN exchanges, the proxy's teardown), and the 1 s block timeout of libpcap's
	# TPACKET_V3 ring: a block that has not timed out when tcpdump gets SIGINT is lost. The
	# obvious alternative, --immediate-mode, dropped about 15% of the any capture in bursts.
	sleep 2
	stop_captures
	trap - EXIT INT TERM

	local f
	for f in pod-veth.pcap node-any.pcapng node-any-sll2.pcap; do
		[[ -s $out/$f ]] || die "capture $f is missing or empty"
		chmod 0644 "$out/$f"
		log "$f: $(capinfos -c -M "$out/$f" | sed -n 's/^Number of packets: *//p') packets"
	done
	log "capture done ($((SECONDS - t0)) s), files in $out"
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
		set_prefix "${1:-of}"
		"cmd_$cmd"
		;;
	capture)
		case $# in
		1) set_prefix of && cmd_capture "$1" ;;
		2) set_prefix "$1" && cmd_capture "$2" ;;
		*) usage ;;
		esac
		;;
	*) usage ;;
	esac
}

main "$@"
