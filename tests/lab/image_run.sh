#!/bin/sh
#
# Runs a command from an unpacked image the way a kubelet runs a container with the DaemonSet's
# securityContext: root filesystem read-only, /proc, a read-only /sys, a minimal /dev and a
# tmpfs /tmp mounted into it, CONFDIR read-only at /tmp/conf (a ConfigMap's place), then chroot
# and only the capabilities KEEP (bounding, permitted, effective, inheritable and ambient), the
# bounding set without DROP, and no_new_privs (allowPrivilegeEscalation: false). The network
# namespace is the caller's: run it with `ip netns exec NODE` for the node's host network.
#
#   image_run.sh ROOTFS CONFDIR DROP KEEP COMMAND [ARG]...
#
# DROP: capability numbers, comma-separated (all but KEEP); KEEP: capsh names
# (cap_bpf,cap_net_admin,...). Exec all the way down: the command keeps this script's process
# id, so the caller can read its /proc/PID/status.

set -eu
[ $# -ge 5 ] || { echo "usage: ${0##*/} ROOTFS CONFDIR DROP KEEP COMMAND [ARG]..." >&2; exit 2; }
root=$1 conf=$2 drop=$3 keep=$4
shift 4
[ -x "$root$1" ] || { echo "${0##*/}: no $1 in $root" >&2; exit 2; }

# A mount namespace of our own: nothing below is seen outside, and all of it goes when we do.
if [ "${IMAGE_RUN_UNSHARED:-}" != 1 ]; then
	IMAGE_RUN_UNSHARED=1 exec unshare --mount --propagation private "$0" "$root" "$conf" "$drop" "$keep" "$@"
fi

ro_bind() {
	mount --bind "$1" "$2"
	mount -o remount,bind,ro "$2"
}

ro_bind "$root" "$root"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount -o remount,bind,ro "$root/sys"
mount -t tmpfs -o mode=755,size=64k tmpfs "$root/dev"
for d in null zero random urandom; do
	touch "$root/dev/$d"
	mount --bind "/dev/$d" "$root/dev/$d"
done
mount -t tmpfs -o mode=1777,size=16m tmpfs "$root/tmp"
mkdir "$root/tmp/conf"
ro_bind "$conf" "$root/tmp/conf"

caps=--caps=
amb=--noamb
if [ -n "$keep" ]; then
	caps="--caps=$keep+eip"
	amb="--addamb=$keep"
fi
# Order matters: chroot while CAP_SYS_CHROOT is there, drop the bounding set while
# CAP_SETPCAP is, then the final sets.
command=$1
shift
exec capsh --chroot="$root" --drop="$drop" "$caps" "$amb" --no-new-privs --shell="$command" -- "$@"
