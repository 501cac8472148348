# shellcheck shell=bash disable=SC2034
# lib.sh - settings shared by the test cluster's scripts (sourced, not run).
# The cluster lives under $LAB, outside the work tree, so that an unprivileged
# test user can read its slurm.conf and plugin wherever the repository is.
LAB=${LAB:-/run/podman-hpc-lab}
RUN=$LAB/run
ETC=$LAB/etc
BR=phpcbr0
NET=10.77.0
REGISTRY_ADDR=$NET.1:5000
TEST_USER=${TEST_USER:-phpc-user}

# alive PIDFILE COMM: the pid in PIDFILE is running and is COMM.
alive() {
	local pid
	[ -s "$1" ] || return 1
	pid=$(cat "$1")
	[ -d "/proc/$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
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
		for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
		if [ -d "/proc/$pid" ]; then
			echo "$comm $pid still alive after 10 s, SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
}

# node_pids NS: the pids living in network namespace NS.
node_pids() { ip netns pids "$1" 2>/dev/null || true; }
