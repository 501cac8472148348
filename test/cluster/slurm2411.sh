# shellcheck shell=bash disable=SC2034,SC2154
# slurm2411.sh - sourced by up.sh for SLURM=24.11: the cluster runs Debian
# 13's Slurm 24.11 from the root filesystem rootfs.sh makes. slurmctld and
# each slurmd run chrooted there (slurm-root.sh) in their node's network,
# UTS and mount namespaces; munge, the registry and podman-hpcd stay the
# host's. The client commands (srun, sbatch, ...) are wrappers under
# $LAB/slurm/bin that run the root's binaries with the root's own dynamic
# loader and libraries, as any user, on the host (the "login node") and in
# a batch script's container alike; build/cluster.env puts them first in
# PATH. slurm.conf's PluginDir names the root's plugins by their host path,
# which resolves inside the root too (rootfs.sh links it to /). $here and
# $repo are up.sh's.
SLURM_ROOTFS=$("$here/rootfs.sh")
SLURM_PLUGIN_SRC=$repo/build/slurm-24.11/spank_podman_hpc.so
SLURM_OTHER_PLUGIN=$repo/bin/spank_podman_hpc.so
SLURM_ENTER=("$here/slurm-root.sh" "$SLURM_ROOTFS")
SLURM_BIN=$LAB/slurm/bin
SLURM_CONF_EXTRA="PluginDir=$SLURM_ROOTFS/usr/lib/x86_64-linux-gnu/slurm-wlm"
SLURM_TOOLS=()
[ -x "$SLURM_ROOTFS/usr/sbin/slurmd" ] || { echo "up.sh: no slurmd in $SLURM_ROOTFS" >&2; exit 1; }
[ -e "$SLURM_PLUGIN_SRC" ] || { echo "up.sh: $SLURM_PLUGIN_SRC missing; run 'make build SLURM=24.11'" >&2; exit 1; }

# write_slurm_wrappers: one per command of the root's slurm-client.
write_slurm_wrappers() {
	local f name libs=$SLURM_ROOTFS/usr/lib/x86_64-linux-gnu
	rm -rf "$SLURM_BIN"
	mkdir -p "$SLURM_BIN"
	for f in $(chroot "$SLURM_ROOTFS" dpkg-query -L slurm-client | grep '^/usr/bin/.'); do
		name=$(basename "$f")
		cat >"$SLURM_BIN/$name" <<-SH
		#!/bin/sh
		# Slurm 24.11's $name, from $SLURM_ROOTFS (test/cluster/slurm2411.sh)
		exec $SLURM_ROOTFS/usr/lib64/ld-linux-x86-64.so.2 --library-path $libs:$libs/slurm-wlm --argv0 $name $SLURM_ROOTFS$f "\$@"
		SH
		chmod 0755 "$SLURM_BIN/$name"
	done
	chmod 0755 "$LAB/slurm"
}

# In a batch script's container: the root (its loader, libraries, plugins
# and PMIx), and the wrappers where the image expects Slurm's commands.
SLURM_BATCH_MOUNTS=$SLURM_ROOTFS
for c in srun sbatch salloc scontrol squeue sinfo scancel; do
	SLURM_BATCH_MOUNTS+=",$SLURM_BIN/$c:/usr/bin/$c"
done
