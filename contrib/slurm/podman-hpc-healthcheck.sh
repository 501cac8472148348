#!/bin/bash
# podman-hpc's node health check, for Slurm's HealthCheckProgram (and NHC:
# contrib/slurm/nhc/podman_hpc.nhc). It asks the node's podman-hpcd
# (podman-hpcd status); a node whose daemon does not answer, or answers that
# it cannot run containers, is drained with the reason, so that Slurm sends
# jobs elsewhere instead of failing each one there. In slurm.conf:
#   HealthCheckProgram=/usr/local/libexec/podman-hpc/podman-hpc-healthcheck.sh
#   HealthCheckInterval=300
#   HealthCheckNodeState=ANY
#
# It resumes a node only if it drained it itself (its reason starts with
# "podman-hpc:") and the daemon answers again that it can run containers; a
# node drained or down for any other reason is left as it is, whatever the
# daemon says.
#
# Settings (HealthCheckProgram takes no arguments, and slurmd runs it with
# an environment of SLURMD_NODENAME alone): the environment, or the file
# /etc/default/podman-hpc-healthcheck (PODMAN_HPC_HEALTHCHECK_CONF), sourced:
#   PODMAN_HPCD         the daemon's binary (default: podman-hpcd in PATH)
#   PODMAN_HPCD_SOCKET  its socket (default /run/podman-hpc/podman-hpcd.sock)
#   SLURM_CONF          for scontrol and sinfo, when not /etc/slurm/slurm.conf
#   TIMEOUT             seconds status may take (default 20; slurmd kills the
#                       health check after 60)
#
#   podman-hpc-healthcheck.sh           check, drain or resume; exit 1 if unhealthy
#   podman-hpc-healthcheck.sh --check   only print why the node is unhealthy
#                                       (NHC's check does this); exit 1 if it is
set -u
# slurmd passes no PATH: bash's default, exported for what it runs.
export PATH=${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}
conf=${PODMAN_HPC_HEALTHCHECK_CONF:-/etc/default/podman-hpc-healthcheck}
# shellcheck source=/dev/null
[ -r "$conf" ] && . "$conf"
PODMAN_HPCD=${PODMAN_HPCD:-podman-hpcd}
PODMAN_HPCD_SOCKET=${PODMAN_HPCD_SOCKET:-/run/podman-hpc/podman-hpcd.sock}
TIMEOUT=${TIMEOUT:-20}
PREFIX="podman-hpc:"
[ -z "${SLURM_CONF:-}" ] || export SLURM_CONF

mode=act
case ${1:-} in
"") ;;
--check) mode=check ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

say() {
	echo "podman-hpc-healthcheck: $*" >&2
	command -v logger >/dev/null && logger -t podman-hpc-healthcheck -- "$*"
}

# unhealthy: empty when the daemon answers that the node can run containers,
# else one line saying why.
unhealthy() {
	local out rc why
	out=$(timeout "$TIMEOUT" "$PODMAN_HPCD" status --socket "$PODMAN_HPCD_SOCKET" 2>&1)
	rc=$?
	[ "$rc" = 0 ] && return
	# The daemon's own reason, else the client's error (no answer), else
	# the exit status.
	why=$(sed -n 's/^UNAVAILABLE: //p' <<<"$out" | head -1)
	[ -n "$why" ] || why=$(sed -n 's/^podman-hpcd: //p' <<<"$out" | tail -1)
	[ "$rc" = 124 ] && why="podman-hpcd status did not answer within ${TIMEOUT}s"
	[ -n "$why" ] || why="podman-hpcd status exited $rc"
	# One line, short enough for sinfo -R.
	why=$(tr -s '\n\t' '  ' <<<"$why")
	echo "${why:0:400}"
}

why=$(unhealthy)
if [ "$mode" = check ]; then
	[ -z "$why" ] && exit 0
	echo "$why"
	exit 1
fi

node=${SLURMD_NODENAME:-$(hostname -s)}
# The node's state and reason as Slurm has them (the first partition's line).
IFS='|' read -r state reason < <(sinfo -h -N -n "$node" -o '%T|%E' 2>/dev/null | head -1)
state=${state:-unknown}
reason=${reason:-none}
ours=false
[[ $reason == "$PREFIX"* ]] && ours=true
drained=false
[[ $state == drain* ]] && drained=true

if [ -z "$why" ]; then
	if $drained && $ours; then
		say "$node: podman-hpcd can run containers again; resuming the node (drained for: $reason)"
		scontrol update nodename="$node" state=resume
	fi
	exit 0
fi

new="$PREFIX $why"
if $drained || [[ $state == down* ]]; then
	# Drained or down for another reason (the admin's, another check's):
	# theirs to lift; ours: keep the reason current.
	if $ours && [ "$reason" != "$new" ]; then
		scontrol update nodename="$node" state=drain reason="$new"
	fi
	say "$node: $why"
	exit 1
fi
say "$node: draining: $why"
scontrol update nodename="$node" state=drain reason="$new"
exit 1
