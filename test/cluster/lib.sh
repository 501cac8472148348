# shellcheck shell=bash disable=SC2034
# lib.sh - settings shared by the test cluster's scripts (sourced, not run).
# The cluster lives under $LAB, outside the work tree, so that an unprivileged
# test user can read its slurm.conf and plugin wherever the repository is.
# PHPC_LAB_ID=N (1-9) runs a second, independent cluster beside the default
# one: its own directory, network, bridge and namespace names.
LAB_ID=${PHPC_LAB_ID:-}
# An inherited LAB (build/clusterN.env exports it) must be this cluster's:
# another's would mix its directory with this one's network and namespaces.
if [ -n "${LAB:-}" ] && [ "$LAB" != "/run/podman-hpc-lab$LAB_ID" ]; then
	echo "test/cluster: LAB=$LAB is not cluster ${LAB_ID:-(default)}'s (PHPC_LAB_ID=${PHPC_LAB_ID:-}); unset LAB, or source that cluster's build/cluster*.env" >&2
	exit 1
fi
LAB=/run/podman-hpc-lab$LAB_ID
RUN=$LAB/run
ETC=$LAB/etc
NS=phpc$LAB_ID # namespace name prefix: $NS-ctl, $NS-n1...
BR=${NS}br0
NET=10.77.${LAB_ID:-0}
REGISTRY_ADDR=$NET.1:5000
# Where an e2e test may run a registry server of its own (plain HTTP, like
# the test registry): security_registry_test.go's.
TEST_REGISTRY_ADDR=$NET.1:5001
TEST_USER=${TEST_USER:-phpc-user}

# running PID COMM: PID is COMM and has not exited. A zombie counts as gone:
# where PID 1 does not reap orphans, killed daemons linger as zombies.
running() {
	[ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ] || return 1
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}

# alive PIDFILE COMM: the pid in PIDFILE is running and is COMM.
alive() {
	[ -s "$1" ] && running "$(cat "$1")" "$2"
}

# stop_pidfiles COMM PIDFILE...: SIGTERM each listed pid whose comm matches,
# all at once, wait up to 10 s, SIGKILL survivors. By PID only.
stop_pidfiles() {
	local comm=$1 f pid pids=()
	shift
	for f in "$@"; do
		alive "$f" "$comm" || continue
		pid=$(cat "$f")
		kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
	done
	for pid in "${pids[@]}"; do
		for _ in $(seq 100); do running "$pid" "$comm" || break; sleep 0.1; done
		if running "$pid" "$comm"; then
			echo "$comm $pid still alive after 10 s, SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
}

# node_pids NS: the pids living in network namespace NS.
node_pids() { ip netns pids "$1" 2>/dev/null || true; }
