# shellcheck shell=bash
#
# Shell functions the lab scripts share (sourced by lab.sh and cluster.sh): logging, running a
# command in a named network namespace, waiting for a condition and stopping a daemon by its pid
# file. Each script sets LAB_NAME, the word its log lines start with.

log() {
	printf '%s %s: %s\n' "$(date +%T.%3N)" "${LAB_NAME:-lab}" "$*" >&2
}

die() {
	log "error: $*"
	exit 1
}

# Interface names are at most 15 characters and the longest a lab makes is PREFIX-to-node or
# PREFIX-vdns, hence at most 7 characters of prefix.
check_prefix() {
	[[ $1 =~ ^[a-z][a-z0-9]{0,6}$ ]] || die "prefix must be 1-7 characters of [a-z0-9], starting with a letter: '$1'"
}

nsx() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

# check_prefix PREFIX: dies unless PREFIX can start interface names (at most 15 characters).
check_prefix() {
	[[ $1 =~ ^[a-z][a-z0-9]{0,6}$ ]] || die "prefix must be 1-7 characters of [a-z0-9], starting with a letter: '$1'"
}

ns_exists() {
	[[ -e /run/netns/$1 ]]
}

# wait_until TENTHS CMD...: run CMD every 0.1 s until it succeeds, at most TENTHS times.
wait_until() {
	local tries=$1 i
	shift
	for ((i = 0; i < tries; i++)); do
		if "$@"; then
			return 0
		fi
		sleep 0.1
	done
	return 1
}

listening() {
	local ns=$1 proto=$2 port=$3
	[[ -n $(nsx "$ns" ss -Hln"$proto" "sport = :$port") ]]
}

# A zombie counts as gone: daemons are reparented to PID 1, which may take its time reaping them.
pid_alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != Z ]]
}

# Stops the process named in a pid file, provided it still is the program we started.
stop_pidfile() {
	local file=$1 comm=$2 pid
	[[ -s $file ]] || {
		rm -f "$file"
		return 0
	}
	pid=$(<"$file")
	if [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" && [[ $(<"/proc/$pid/comm") == "$comm" ]]; then
		log "stopping $comm ($pid)"
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_until 50 eval "! pid_alive $pid"; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -f "$file"
}

expect() {
	local what=$1 want=$2 got=$3
	[[ $got == "$want" ]] || die "check failed: $what: expected '$want', got '$got'"
	log "ok: $what: $got"
}

# nginx_conf STATE SERVER: writes STATE/nginx.conf, a one-worker nginx with its pid file, logs and
# temporary files in STATE, serving the lines SERVER (listen, location) as its one server.
nginx_conf() {
	local state=$1 server=$2
	mkdir -p "$state/nginx-tmp"
	cat >"$state/nginx.conf" <<-EOF
		daemon on;
		worker_processes 1;
		pid $state/nginx.pid;
		error_log $state/nginx-error.log info;
		events {
		    worker_connections 64;
		}
		http {
		    access_log $state/nginx-access.log;
		    client_body_temp_path $state/nginx-tmp/body;
		    proxy_temp_path $state/nginx-tmp/proxy;
		    fastcgi_temp_path $state/nginx-tmp/fastcgi;
		    uwsgi_temp_path $state/nginx-tmp/uwsgi;
		    scgi_temp_path $state/nginx-tmp/scgi;
		    default_type text/plain;
		    server {
		        server_name _;
		$server
		    }
		}
	EOF
}

# delete_namespaces NS...: kills what still runs in them (dnsmasq's TCP children, nginx workers
# of a master whose pid file is gone: all started by the lab), then deletes them with their
# /etc/netns/NS files.
delete_namespaces() {
	local ns pid
	for ns in "$@"; do
		ns_exists "$ns" || continue
		for pid in $(ip netns pids "$ns" 2>/dev/null); do
			log "killing $(cat "/proc/$pid/comm" 2>/dev/null || echo '?') ($pid) left in $ns"
			kill -KILL "$pid" 2>/dev/null || true
		done
	done
	for ns in "$@"; do
		if ns_exists "$ns"; then
			ip netns del "$ns"
		fi
		rm -rf "/etc/netns/$ns"
	done
	rmdir /etc/netns 2>/dev/null || true
}

# The up command of a lab script, from the script's own cmd_down, write_configs,
# build_topology, start_servers and verify; STATE is its state directory.
cmd_up() {
	local t0=$SECONDS
	cmd_down 2>/dev/null
	rm -rf "$STATE"
	mkdir -p "$STATE"
	write_configs
	build_topology
	start_servers
	verify
	log "lab $P is up ($((SECONDS - t0)) s), state in $STATE"
}
