#!/bin/sh
# podman-hpc's job epilog script: optional, a second net. A step's container
# goes when its slurmstepd closes the daemon's socket, and the plugin's own
# job epilog (slurm_spank_job_epilog) removes what the job still has on the
# node (its named containers); this does the same, for sites that want it
# from their Epilog too. In slurm.conf:
#   Epilog=/usr/local/libexec/podman-hpc/epilog.sh   (or call it from yours)
# PODMAN_HPCD and PODMAN_HPCD_SOCKET override the binary and the socket.
# It never fails the job's epilog (which would drain the node): a daemon that
# is not running has no containers left either.
[ -n "$SLURM_JOB_ID" ] || exit 0
"${PODMAN_HPCD:-podman-hpcd}" rm --job "$SLURM_JOB_ID" \
	--socket "${PODMAN_HPCD_SOCKET:-/run/podman-hpc/podman-hpcd.sock}" >/dev/null 2>&1 || true
exit 0
