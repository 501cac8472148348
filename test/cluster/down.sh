#!/bin/bash
# down.sh - stop everything up.sh started (by PID from its pid files, and what
# still lives in the cluster's network namespaces), remove the namespaces and
# the bridge, keep the logs in build/cluster$LAB_ID-logs, and remove $LAB.
set -uo pipefail
here=$(dirname "$(readlink -f "$0")")
repo=$(readlink -f "$here/../..")
# shellcheck source=test/cluster/lib.sh
. "$here/lib.sh"
[ "$(id -u)" = 0 ] || { echo "down.sh: must run as root" >&2; exit 1; }

# Jobs first (slurmstepd and their tasks live in the node namespaces), so that
# slurmd need not wait for them.
for ns in "/run/netns/$NS"-n*; do
	[ -e "$ns" ] || continue
	for pid in $(node_pids "$(basename "$ns")"); do
		[ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmstepd ] && kill -KILL "$pid" 2>/dev/null
	done
done
stop_pidfiles podman-hpcd "$RUN"/node*/podman-hpcd.pid
stop_pidfiles slurmd "$RUN"/node*/slurmd.pid
stop_pidfiles slurmctld "$RUN/ctld/slurmctld.pid"
stop_pidfiles docker-registry "$RUN/registry/registry.pid"
stop_pidfiles munged "$RUN/munge/munged.pid"

# Whatever is left in our namespaces was started by the cluster: by PID.
for ns in "/run/netns/$NS"-*; do
	[ -e "$ns" ] || continue
	for pid in $(node_pids "$(basename "$ns")"); do
		echo "down.sh: leftover pid $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) in $(basename "$ns"), killing" >&2
		kill -KILL "$pid" 2>/dev/null
	done
	ip netns del "$(basename "$ns")"
done
ip link del "$BR" 2>/dev/null

if [ -d "$LAB" ]; then
	# A node's mounts die with its mount namespace; anything still mounted
	# under $LAB on the host would be ours too.
	awk -v lab="$LAB" '$2 == lab || index($2, lab "/") == 1 {print $2}' /proc/self/mounts | sort -r | xargs -r -n1 umount -l
	rm -rf "$repo/build/cluster$LAB_ID-logs"
	mkdir -p "$repo/build/cluster$LAB_ID-logs"
	(cd "$RUN" 2>/dev/null && find . -name '*.log' -exec cp --parents {} "$repo/build/cluster$LAB_ID-logs/" \;) || true
	rm -rf "$LAB"
fi
rm -f "$repo/build/cluster$LAB_ID.env"
echo "cluster down"
