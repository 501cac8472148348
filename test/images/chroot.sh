# shellcheck shell=bash
# chroot.sh - in_chroot, sourced by the image builds (build.sh, rpm.sh). The
# sourcing script sets IMAGE_PATH (the PATH commands get inside) and hashes
# this file into its layouts' keys.

# Run a command inside a rootfs with just enough of a system for apt and
# ldd: /proc, and a private tmpfs /dev holding a few nodes (never the
# host's /dev, and nothing that could end up in a layer).  Everything is
# unmounted again before returning so the next umoci repack sees a plain
# tree; the exit trap covers the failure paths.
in_chroot() {
    local root=$1 rc=0 added_resolv=""
    shift
    mount -t proc proc "$root/proc"
    mount -t tmpfs -o mode=0755,size=64m podman-hpc-dev "$root/dev"
    mknod -m 0666 "$root/dev/null" c 1 3
    mknod -m 0666 "$root/dev/zero" c 1 5
    mknod -m 0666 "$root/dev/full" c 1 7
    mknod -m 0666 "$root/dev/random" c 1 8
    mknod -m 0666 "$root/dev/urandom" c 1 9
    mknod -m 0666 "$root/dev/tty" c 5 0
    mkdir -m 1777 "$root/dev/shm"
    ln -s /proc/self/fd "$root/dev/fd"
    # apt logs through a pty; without one it prints an error per run.
    mkdir "$root/dev/pts"
    mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
    ln -s pts/ptmx "$root/dev/ptmx"
    # apt needs name resolution; lend the host's resolver config for the
    # duration of the command only, so it never lands in a layer.
    if [[ ! -e $root/etc/resolv.conf && ! -L $root/etc/resolv.conf ]]; then
        cp /etc/resolv.conf "$root/etc/resolv.conf"
        added_resolv=1
    fi
    env -i PATH="$IMAGE_PATH" HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive \
        /usr/sbin/chroot "$root" "$@" || rc=$?
    [[ -z $added_resolv ]] || rm -f "$root/etc/resolv.conf"
    umount "$root/dev/pts"
    umount "$root/dev"
    umount "$root/proc"
    return "$rc"
}
