#!/bin/bash
# slurm-root.sh ROOTFS CMD...: run CMD (a daemon of the Slurm in ROOTFS, see
# rootfs.sh) chrooted into ROOTFS, with the host's data at the same paths
# inside: the kernel's filesystems, /run (the cluster under $LAB, munge's
# socket), /tmp, /home, every other top-level data directory (a step's
# working directory may be anywhere), and the users: the host's passwd,
# group, nsswitch.conf and extrausers (same names, same ids). Run in a mount
# namespace of the caller's own (up.sh gives each daemon one): the binds go
# with it. The host's /usr, /etc and /var stay out; ROOTFS's are the Slurm.
set -euo pipefail
# shellcheck source=test/cluster/lib.sh
. "$(dirname "$(readlink -f "$0")")/lib.sh"
[ $# -ge 2 ] || { echo "usage: $0 ROOTFS CMD..." >&2; exit 2; }
root=$1
shift
[ -x "$root/usr/sbin/slurmd" ] || { echo "slurm-root: $root holds no Slurm; run test/cluster/rootfs.sh" >&2; exit 1; }
# The node's local disk is shared with its copy inside: what podman-hpcd
# (outside, in this namespace) mounts there is seen by slurmstepd too.
if mountpoint -q "$LAB/nodelocal"; then mount --make-rshared "$LAB/nodelocal"; fi
bind_dir() { mkdir -p "$root$1" && mount --rbind "$1" "$root$1"; }
for d in /proc /sys /dev /run; do bind_dir "$d"; done
for d in /*; do
	if [ ! -d "$d" ] || [ -L "$d" ]; then continue; fi
	case $d in
	/usr | /etc | /var | /boot | /lost+found | /proc | /sys | /dev | /run | /bin | /sbin | /lib*) ;;
	*) bind_dir "$d" ;;
	esac
done
for d in /var/tmp /var/lib/extrausers; do [ -d "$d" ] && bind_dir "$d"; done
for f in /etc/passwd /etc/group /etc/shadow /etc/gshadow /etc/nsswitch.conf /etc/hosts /etc/localtime; do
	[ -e "$f" ] || continue
	[ -e "$root$f" ] || touch "$root$f"
	mount --bind "$f" "$root$f"
done
exec chroot "$root" "$@"
