#!/usr/bin/env bash
# Build the benchmark image for pkg/image/store: the project's MPI test image
# (4 layers, Debian bookworm) plus a Python/SciPy layer, a compilers layer,
# and a top layer that deletes documentation, locales and test suites
# (whiteouts). About 1 GB unpacked.
#
# Usage: bigimage.sh OUTDIR [BASE_LAYOUT]   (root; needs umoci and the
#        host's apt mirror; BASE_LAYOUT defaults to build/images/mpi)
#
# The layout is built in a temp dir and renamed to OUTDIR at the end.
set -euo pipefail
shopt -s inherit_errexit

[[ $# -ge 1 ]] || { echo "usage: $0 OUTDIR [BASE_LAYOUT]" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "$0: must run as root" >&2; exit 1; }
out=$1
base=${2:-$(git -C "$(dirname "$0")" rev-parse --show-toplevel)/build/images/mpi}
[[ -f $base/index.json ]] || { echo "$0: no OCI layout at $base (run test/images/build.sh)" >&2; exit 1; }
[[ ! -e $out ]] || { echo "$0: $out exists" >&2; exit 1; }

work=$(mktemp -d "$(dirname "$out")/.bigimage.XXXXXX")
root=$work/bundle/rootfs

# Unmount what run_in left mounted, deepest first, before deleting.
cleanup() {
    local mp
    awk -v d="$work/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r |
        while read -r mp; do umount -l "$mp" || true; done
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Run a command in the rootfs with /proc, a minimal /dev and the host's
# resolver, all gone again before the next repack.
run_in() {
    mount -t proc proc "$root/proc"
    mount -t tmpfs -o mode=0755,size=16m bench-dev "$root/dev"
    mknod -m 0666 "$root/dev/null" c 1 3
    mknod -m 0666 "$root/dev/zero" c 1 5
    mknod -m 0666 "$root/dev/urandom" c 1 9
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    local rc=0
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C DEBIAN_FRONTEND=noninteractive \
        chroot "$root" "$@" || rc=$?
    rm -f "$root/etc/resolv.conf"
    umount "$root/dev" "$root/proc"
    return "$rc"
}

apt_layer() {
    echo "bigimage.sh: apt-get install $*" >&2
    run_in apt-get -q -o Acquire::Languages=none update >"$work/apt.log" 2>&1
    run_in apt-get -q install -y --no-install-recommends "$@" >>"$work/apt.log" 2>&1 ||
        { tail -20 "$work/apt.log" >&2; return 1; }
    run_in apt-get clean
    find "$root/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name lock ! -name partial -delete
    umoci repack --refresh-bundle --history.created_by "apt-get install $*" \
        --image "$work/layout:latest" "$work/bundle"
}

cp -a "$base" "$work/layout"
rm -f "$work/layout/.podman-hpc-build-key"
umoci unpack --image "$work/layout:latest" "$work/bundle"
apt_layer python3-numpy python3-scipy python3-pandas python3-matplotlib
apt_layer gcc g++ gfortran make cmake libopenblas-dev liblapack-dev
echo "bigimage.sh: deleting docs, locales and test suites" >&2
rm -rf "$root"/usr/share/doc/* "$root"/usr/share/locale/* "$root"/usr/share/man/* \
    "$root"/usr/lib/python3/dist-packages/*/tests "$root"/usr/lib/python3/dist-packages/*/*/tests
umoci repack --history.created_by "remove docs, locales and tests" \
    --image "$work/layout:latest" "$work/bundle"
umoci config --image "$work/layout:latest" --config.cmd /bin/bash
umoci gc --layout "$work/layout"
chmod -R a+rX "$work/layout"
mv -T "$work/layout" "$out"
echo "bigimage.sh: $out" >&2
