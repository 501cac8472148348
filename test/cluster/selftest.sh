#!/bin/bash
# selftest.sh up|down: the test bed's own checks, run by make e2e around the
# Go suite.
#   up:   a second up.sh reuses the running cluster; after a crash (daemons
#         killed with SIGKILL) up.sh recovers; jobs run afterwards; make
#         cluster in a shell that sourced cluster.env reuses it too.
#   down: after down.sh, no process, namespace, bridge, mount or $LAB is left.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
# shellcheck source=test/cluster/lib.sh
. "$here/lib.sh"
fail() { echo "selftest: FAIL: $*" >&2; exit 1; }

case ${1:-} in
up)
	out=$("$here/up.sh" 2>&1) || fail "second up.sh failed: $(tail -5 <<<"$out")"
	grep -q "already up" <<<"$out" || fail "second up.sh did not reuse the cluster: $out"
	# A crash: slurmctld, one slurmd and the registry die without cleaning up.
	for f in "$RUN/ctld/slurmctld.pid" "$RUN/node1/slurmd.pid" "$RUN/registry/registry.pid"; do
		kill -KILL "$(cat "$f")"
	done
	sleep 0.2
	out=$("$here/up.sh" 2>&1) || fail "up.sh after a crash failed: $(tail -5 <<<"$out")"
	# shellcheck disable=SC1091
	. "$LAB/cluster.env"
	n=$(wc -w <<<"$NODES")
	srun -N"$n" true || fail "srun -N$n true failed after recovery"
	# A step run from the host that waits for the CPUs of the allocation's
	# running step starts once they are free, woken by slurmctld, which
	# reaches srun by the host's name (up.sh's ctl-hosts); not after srun's
	# whole retry time (120 s).
	start=$(date +%s)
	salloc -N1 -n1 -Q sh -c 'srun -n1 sleep 2 & sleep 0.5; srun -n1 true; wait' ||
		fail "salloc with a step waiting for another failed"
	took=$(($(date +%s) - start))
	[ "$took" -lt 60 ] || fail "a step waiting for a running step's CPUs took ${took} s: slurmctld cannot reach srun on the host (see ctl-hosts in up.sh)"
	# A shell that sourced cluster.env (NODES: the node names) runs make
	# cluster: the Makefile counts them, and the cluster is reused.
	out=$(make -C "$here/../.." --no-print-directory cluster SLURM="${SLURM:-}" 2>&1) ||
		fail "make cluster after sourcing cluster.env failed: $(tail -5 <<<"$out")"
	grep -q "already up ($n nodes)" <<<"$out" || fail "make cluster after sourcing cluster.env did not reuse the cluster: $(tail -5 <<<"$out")"
	echo "selftest: reuse, crash recovery, a waiting step's wake and make cluster from cluster.env's shell ok"
	;;
down)
	leftovers=$(ip netns list | grep -c "^$NS-" || true)
	[ "$leftovers" = 0 ] || fail "$leftovers network namespaces left: $(ip netns list)"
	! ip link show "$BR" >/dev/null 2>&1 || fail "bridge $BR left"
	! grep -q " $LAB/" /proc/self/mounts || fail "mounts left: $(grep " $LAB/" /proc/self/mounts)"
	[ ! -e "$LAB" ] || fail "$LAB left"
	for p in /proc/[0-9]*; do
		# "$LAB/": another instance's directory shares the prefix.
		if grep -qs "$LAB/" "$p/cmdline"; then
			fail "process $(basename "$p") left: $(tr '\0' ' ' <"$p/cmdline")"
		fi
	done
	echo "selftest: nothing left behind"
	;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
