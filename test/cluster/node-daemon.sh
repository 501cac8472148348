#!/bin/bash
# node-daemon.sh start|stop NODE: the node's own podman-hpcd, started inside
# the node's namespaces so that what it mounts stays on that node.
set -euo pipefail
# shellcheck source=test/cluster/lib.sh
. "$(dirname "$(readlink -f "$0")")/lib.sh"
[ $# -eq 2 ] || { echo "usage: $0 start|stop NODE" >&2; exit 2; }
action=$1 node=$2
pidfile=$RUN/$node/podman-hpcd.pid
sock=$LAB/nodelocal/podman-hpcd.sock
case $action in
start)
	alive "$pidfile" podman-hpcd && exit 0
	alive "$RUN/$node/slurmd.pid" slurmd || { echo "node-daemon: no slurmd for $node" >&2; exit 1; }
	# nsenter execs the daemon in place (no --fork), so $! is the daemon's pid.
	nsenter -t "$(cat "$RUN/$node/slurmd.pid")" --net --uts --mount -- \
		"$LAB/bin/podman-hpcd" serve --config "$ETC/podman-hpcd.conf" --socket "$sock" \
		</dev/null >>"$RUN/$node/podman-hpcd.log" 2>&1 &
	echo $! >"$pidfile"
	# Up to 20 s: 32 nodes' daemons starting on 2 cores take their time.
	for _ in $(seq 400); do
		"$LAB/bin/node-exec" "$node" test -S "$sock" && exit 0
		# Until the daemon is exec'd, the pid's comm is the shell's or
		# nsenter's: gone or a zombie is what counts.
		state=$(awk '{print $3}' "/proc/$(cat "$pidfile")/stat" 2>/dev/null || true)
		if [ -z "$state" ] || [ "$state" = Z ]; then break; fi
		sleep 0.05
	done
	echo "node-daemon: podman-hpcd did not start on $node; see $RUN/$node/podman-hpcd.log" >&2
	tail -5 "$RUN/$node/podman-hpcd.log" >&2
	exit 1
	;;
stop)
	stop_pidfiles podman-hpcd "$pidfile"
	rm -f "$pidfile"
	;;
*)
	echo "usage: $0 start|stop NODE" >&2
	exit 2
	;;
esac
