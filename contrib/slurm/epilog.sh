#!/bin/sh
# podman-hpc's job epilog: a safety net. A step's container goes when its
# slurmstepd closes the daemon's socket; if anything of the job is still on
# this node, this removes it. In slurm.conf:
#   Epilog=/usr/local/libexec/podman-hpc/epilog.sh   (or call it from yours)
# PODMAN_HPCD and PODMAN_HPCD_SOCKET override the binary and the socket.
# It never fails the job's epilog (which would drain the node): a daemon that
# is not running has no containers left either.
[ -n "$SLURM_JOB_ID" ] || exit 0
"${PODMAN_HPCD:-podman-hpcd}" rm --job "$SLURM_JOB_ID" \
	--socket "${PODMAN_HPCD_SOCKET:-/run/podman-hpc/podman-hpcd.sock}" >/dev/null 2>&1 || true
exit 0
