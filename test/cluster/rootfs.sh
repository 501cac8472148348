#!/bin/bash
# rootfs.sh - the root filesystem of the second Slurm the test bed runs:
# Debian 13 ("trixie") with its Slurm 24.11 (slurmctld, slurmd, the client
# commands, the headers the plugin is built against) made with debootstrap,
# and the plugin built against those headers. Cached: a second run with the
# same package list does nothing. Prints the root's path.
#
#   test/cluster/rootfs.sh            (ROOTFS=/var/cache/podman-hpc/debian13-slurm)
#
# Outside the work tree, so that the unprivileged test user can run the
# client commands from it and a fresh clone reuses it.
set -euo pipefail
ROOTFS=${ROOTFS:-/var/cache/podman-hpc/debian13-slurm}
SUITE=${SUITE:-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
# slurm-wlm-basic-plugins brings auth/munge and mpi/pmix (and libmunge2);
# libnss-extrausers: the NSS-only test user is known inside too.
PACKAGES=slurmctld,slurmd,slurm-client,slurm-wlm-basic-plugins,libslurm-dev,libnss-extrausers,libopenmpi40
stamp="$SUITE $PACKAGES"

[ "$(id -u)" = 0 ] || { echo "rootfs.sh: run as root (debootstrap)" >&2; exit 1; }
if [ "$(cat "$ROOTFS/.podman-hpc-rootfs" 2>/dev/null)" = "$stamp" ]; then
	echo "$ROOTFS"
	exit 0
fi
command -v debootstrap >/dev/null || { echo "rootfs.sh: debootstrap not found; run 'make deps'" >&2; exit 1; }
# A running cluster's daemons have their root there: replacing it under
# them leaves them in a deleted tree.
for p in /proc/[0-9]*; do
	case $(readlink "$p/root" 2>/dev/null) in
	"$ROOTFS" | "$ROOTFS"/*)
		echo "rootfs.sh: $ROOTFS (to be made anew: $stamp) is in use by pid ${p#/proc/} ($(cat "$p/comm" 2>/dev/null)); take its test cluster down first (make cluster-down)" >&2
		exit 1
		;;
	esac
done
T0=$(date +%s)
tmp=$ROOTFS.tmp
rm -rf "$tmp"
mkdir -p "$(dirname "$ROOTFS")"
# minbase: no init, no services; the test bed starts the daemons itself.
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$tmp" "$MIRROR" >"$tmp.log" 2>&1 ||
	{ echo "rootfs.sh: debootstrap failed; see $tmp.log" >&2; tail -5 "$tmp.log" >&2; exit 1; }
# The downloaded .debs are not needed to run it.
rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
# The root is reached by its host path inside too (slurm.conf's PluginDir
# names the 24.11 plugins by it, for the host's clients and the chrooted
# daemons alike).
mkdir -p "$tmp$(dirname "$ROOTFS")"
ln -sfn / "$tmp$ROOTFS"
echo "$stamp" >"$tmp/.podman-hpc-rootfs"
rm -rf "$ROOTFS"
mv "$tmp" "$ROOTFS"
mv "$tmp.log" "$ROOTFS.log"
echo "rootfs.sh: $SUITE with $(chroot "$ROOTFS" slurmd -V) in $(($(date +%s) - T0)) s" >&2
echo "$ROOTFS"
