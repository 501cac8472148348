#!/usr/bin/env bash
# Build the two OCI image layouts used by the podman-hpc integration tests,
# fully offline except for the Debian mirror the host already uses:
#
#   OUTDIR/small  one layer: static busybox + a few /etc files
#   OUTDIR/mpi    Debian bookworm minbase, Open MPI, MPICH, our ring
#                 programs and pingpong, in four layers; the last one
#                 contains whiteouts
#
# Usage: build.sh OUTDIR        (as root: debootstrap, chroot, ownership)
#
# A finished layout carries the cache key (hash of this script and the C
# sources) in a file inside it, so an unchanged second run returns in
# seconds.  Layouts are built in a temp dir inside OUTDIR and renamed into
# place, so a crash never leaves a half-built image where the cache would
# find it.
# The debootstrap layer is cached separately under OUTDIR/.cache.
set -euo pipefail
# Let "x=$(cmd)" fail the script when cmd fails part-way.
shopt -s inherit_errexit

readonly SUITE=bookworm
readonly IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
readonly KEYFILE=.podman-hpc-build-key
# Applets that get a /bin symlink in the small image; busybox resolves the
# applet from argv[0], so a symlink is all a command needs.
readonly APPLETS=(
    sh ash '[' test echo printf true false env id whoami hostname uname
    ls cat cp mv rm ln mkdir rmdir touch chmod chown stat readlink realpath
    basename dirname pwd grep egrep sed awk cut tr sort uniq head tail wc
    tee xargs find sleep date kill ps mount umount df du free nproc seq
    timeout tar gzip mktemp expr sync which vi less
)

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
[[ $EUID -eq 0 ]] || die "must run as root (debootstrap, chroot, file ownership)"

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly HERE
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
readonly SELF
readonly RING_SRC="$HERE/ring.c"
readonly PINGPONG_SRC="$HERE/pingpong.c"
mkdir -p "$1"
OUTDIR=$(cd "$1" && pwd)
readonly OUTDIR
KEY=$(cat "$SELF" "$HERE/chroot.sh" "$RING_SRC" "$PINGPONG_SRC" | sha256sum | cut -d' ' -f1)
readonly KEY

# Unmount everything below $1, deepest first.  Used by the exit trap and
# before deleting leftovers of a killed run: rm -rf must never reach into a
# mounted /proc or /dev.
unmount_under() {
    local mp
    while read -r mp; do
        umount "$mp" 2>/dev/null || umount -l "$mp" || log "warning: cannot unmount $mp"
    done < <(awk -v d="$1/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
}

remove_tree() {
    unmount_under "$1"
    rm -rf --one-file-system "$1"
}

# The mirror comes from the host's apt configuration so that no host name is
# committed to the repository; DEBIAN_MIRROR overrides it.
find_mirror() {
    local f=/etc/apt/sources.list.d/debian.sources uri=""
    if [[ -r $f ]]; then
        # deb822: blank-line separated stanzas of "Field: value" lines.
        uri=$(awk -v suite="$SUITE" '
            function flush(  n, i, s) {
                n = split(suites, s, " ")
                for (i = 1; i <= n; i++)
                    if (s[i] == suite && types ~ /(^| )deb( |$)/ && uris != "") {
                        split(uris, s, " "); print s[1]; found = 1; exit
                    }
                types = suites = uris = ""
            }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            { key = tolower($1); $1 = "" }
            key == "types:" { types = $0 }
            key == "suites:" { suites = $0 }
            key == "uris:" { uris = $0 }
            END { if (!found) flush() }
        ' "$f")
    fi
    if [[ -z $uri && -r /etc/apt/sources.list ]]; then
        # One-line format: deb [options] URI SUITE COMPONENT...
        uri=$(awk -v suite="$SUITE" '
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }
        ' /etc/apt/sources.list)
    fi
    [[ -n $uri ]] || die "no '$SUITE' mirror in the host apt sources; set DEBIAN_MIRROR"
    printf '%s\n' "$uri"
}

# in_chroot ROOT CMD...: chroot.sh.
# shellcheck source=test/images/chroot.sh
. "$HERE/chroot.sh"

# Layer 1: debootstrap minbase, stored as a one-layer OCI layout in $1.
# Its cache key hashes this function's own text, so editing it rebuilds.
build_base() {
    local layout=$1 mirror=$2 bundle=$WORK/base-bundle root
    root=$bundle/rootfs
    umoci init --layout "$layout"
    umoci new --image "$layout:latest"
    umoci unpack --image "$layout:latest" "$bundle"
    log "debootstrap $SUITE from $mirror (takes a minute or two)"
    FAIL_LOG=$WORK/debootstrap.log
    debootstrap --variant=minbase --arch="$(dpkg --print-architecture)" \
        "$SUITE" "$root" "$mirror" >"$FAIL_LOG" 2>&1
    FAIL_LOG=
    # Container runtimes provide /dev, resolv.conf and hostname; copies of
    # the build host's must not ship in the image.
    find "$root/dev" -mindepth 1 -delete
    rm -f "$root/etc/resolv.conf" "$root/etc/hostname"
    # debootstrap leaves ~50 MB of package lists behind; apt_layer fetches
    # fresh ones when it needs them.
    find "$root/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name lock ! -name partial -delete
    # Keep package maintainer scripts from starting daemons in the chroot.
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
    in_chroot "$root" apt-get clean
    umoci repack --history.created_by "debootstrap --variant=minbase $SUITE" \
        --image "$layout:latest" "$bundle"
    remove_tree "$bundle"
}

# One apt layer: install packages and drop the package lists and archives
# in the same layer so they never cost space in the image.
apt_layer() {
    local root=$1
    shift
    log "apt-get install $*"
    # The output only matters on failure, when the exit trap shows it.  (No
    # "|| handler" here: that would switch off set -e inside in_chroot.)
    FAIL_LOG=$WORK/apt.log
    # Translations are not needed and cost 6 MB per download.
    in_chroot "$root" apt-get -q -o Acquire::Languages=none update >"$FAIL_LOG" 2>&1
    in_chroot "$root" apt-get -q install -y --no-install-recommends "$@" >>"$FAIL_LOG" 2>&1
    in_chroot "$root" apt-get clean >>"$FAIL_LOG" 2>&1
    FAIL_LOG=
    find "$root/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name lock ! -name partial -delete
}

build_small() {
    local layout=$1 bundle=$WORK/small-bundle root applet
    root=$bundle/rootfs
    # A dynamic busybox would not run in an image without a libc.
    dpkg-query -S /bin/busybox 2>/dev/null | grep -q '^busybox-static:' ||
        die "/bin/busybox is not from busybox-static (apt-get install busybox-static)"
    umoci init --layout "$layout"
    umoci new --image "$layout:latest"
    umoci unpack --image "$layout:latest" "$bundle"
    mkdir -p "$root"/{bin,dev,etc,proc,sys,run,usr/bin,var}
    install -d -m 0700 "$root/root"
    install -d -m 1777 "$root/tmp"
    install -m 0755 /bin/busybox "$root/bin/busybox"
    for applet in "${APPLETS[@]}"; do
        ln -s busybox "$root/bin/$applet"
    done
    # For "#!/usr/bin/env" scripts.
    ln -s ../../bin/busybox "$root/usr/bin/env"
    cat >"$root/etc/os-release" <<'EOF'
ID=podman-hpc-small
NAME="podman-hpc small test image"
PRETTY_NAME="podman-hpc small test image"
EOF
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\n' >"$root/etc/group"
    umoci repack --history.created_by "podman-hpc test/images/build.sh: busybox" \
        --image "$layout:latest" "$bundle"
    umoci config --image "$layout:latest" --config.env "PATH=$IMAGE_PATH" \
        --config.cmd /bin/sh --config.workingdir /
    umoci gc --layout "$layout"
    remove_tree "$bundle"
}

build_mpi() {
    local layout=$1 base=$2 bundle=$WORK/mpi-bundle root bin libs
    root=$bundle/rootfs

    # Compile on the host first: fail fast, before the slow apt layers.  The
    # host is Debian 12 too, so the binaries match the image's libraries.
    mkdir -p "$WORK/ring"
    mpicc.openmpi -O2 -Wall -o "$WORK/ring/ring" "$RING_SRC"
    mpicc.mpich -O2 -Wall -o "$WORK/ring/ring-mpich" "$RING_SRC"
    mpicc.openmpi -O2 -Wall -o "$WORK/ring/pingpong" "$PINGPONG_SRC"

    # Start from a copy of the cached base so its layer digest stays the
    # same across rebuilds (registries and tests can reuse the blob).
    cp -a "$base" "$layout"
    rm -f "$layout/$KEYFILE"
    umoci unpack --image "$layout:latest" "$bundle"

    # --refresh-bundle makes the next repack diff against this layer
    # instead of against the original unpack.
    apt_layer "$root" openmpi-bin libopenmpi3
    umoci repack --refresh-bundle --history.created_by "apt-get install openmpi-bin libopenmpi3" \
        --image "$layout:latest" "$bundle"
    apt_layer "$root" mpich libmpich12
    umoci repack --refresh-bundle --history.created_by "apt-get install mpich libmpich12" \
        --image "$layout:latest" "$bundle"

    install -m 0755 "$WORK/ring/ring" "$WORK/ring/ring-mpich" "$WORK/ring/pingpong" "$root/usr/local/bin/"
    for bin in ring ring-mpich pingpong; do
        libs=$(in_chroot "$root" ldd "/usr/local/bin/$bin")
        if grep 'not found' <<<"$libs" >&2; then
            die "$bin has unresolved libraries in the image"
        fi
    done
    # Deleting files that lower layers added gives this layer whiteouts,
    # which the layer-application tests need.
    find "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" \
        -mindepth 1 -maxdepth 1 -exec rm -rf {} +
    rm -f "$root/usr/sbin/policy-rc.d" "$root"/var/cache/apt/*.bin
    umoci repack --history.created_by "ring programs and pingpong; remove docs and policy-rc.d" \
        --image "$layout:latest" "$bundle"
    umoci config --image "$layout:latest" --config.env "PATH=$IMAGE_PATH" \
        --config.cmd /bin/bash --config.workingdir /
    umoci gc --layout "$layout"
    remove_tree "$bundle"
}

# Path of the blob holding the image manifest tagged latest.
manifest_blob() {
    local digest
    digest=$(jq -r '.manifests[]
        | select(.annotations["org.opencontainers.image.ref.name"] == "latest")
        | .digest' "$1/index.json")
    [[ $digest == sha256:* ]] || die "$1: no 'latest' tag"
    printf '%s/blobs/sha256/%s\n' "$1" "${digest#sha256:}"
}

# Fail unless layout $1 has at least $2 layers; with $3 set, also require
# whiteouts in the top layer.  Runs on the temp copy, before it is cached.
verify_layout() {
    local layout=$1 min=$2 want_wh=${3:-} mf n top wh
    mf=$(manifest_blob "$layout")
    n=$(jq '.layers | length' "$mf")
    ((n >= min)) || die "$layout: $n layers, expected at least $min"
    if [[ -n $want_wh ]]; then
        top=$(jq -r '.layers[-1].digest' "$mf")
        # Count via a file: grep -q would close the pipe on tar (pipefail).
        tar -tzf "$layout/blobs/sha256/${top#sha256:}" >"$WORK/top-layer.list"
        wh=$(grep -c '/\.wh\.' "$WORK/top-layer.list" || true)
        ((wh > 0)) || die "$layout: top layer has no whiteouts"
        grep -Eqx '(\./)?usr/local/bin/ring' "$WORK/top-layer.list" ||
            die "$layout: ring is not in the top layer"
        log "$(basename "$layout"): top layer has $wh whiteouts"
    fi
}

report() {
    local name=$1 mf
    mf=$(manifest_blob "$OUTDIR/$name")
    printf '%s: %s layers, %s total (compressed)\n' "$OUTDIR/$name" \
        "$(jq '.layers | length' "$mf")" \
        "$(jq '[.layers[].size] | add' "$mf" | numfmt --to=iec)"
    jq -r '.layers[] | "\(.size) \(.digest)"' "$mf" |
        while read -r size digest; do
            printf '  %8s  %s\n' "$(numfmt --to=iec "$size")" "$digest"
        done
}

is_current() {
    [[ -f $OUTDIR/$1/$KEYFILE && $(<"$OUTDIR/$1/$KEYFILE") == "$KEY" ]]
}

# Stamp a finished layout and swap it in.  rename(2) cannot replace a
# non-empty directory, so the old one is first moved into the work dir
# (deleted on exit); a crash in between leaves no image, never half of one.
publish() {
    local built=$1 name=$2
    printf '%s\n' "$KEY" >"$built/$KEYFILE"
    # umoci writes blobs 0600; tests may read the layouts as another user.
    chmod -R a+rX "$built"
    sync -f "$built"
    if [[ -e $OUTDIR/$name ]]; then
        mv -T "$OUTDIR/$name" "$WORK/old-$name"
    fi
    mv -T "$built" "$OUTDIR/$name"
}

# ---------------------------------------------------------------------------

# Serialize concurrent builds into the same OUTDIR.
exec 9>"$OUTDIR/.lock"
flock 9

if is_current small && is_current mpi; then
    log "cache hit ($KEY)"
    report small
    report mpi
    exit 0
fi

for cmd in umoci debootstrap jq mpicc.openmpi mpicc.mpich; do
    command -v "$cmd" >/dev/null || die "$cmd not found"
done

# Leftovers of a killed run (we hold the lock, so nobody else owns them).
for stale in "$OUTDIR"/.tmp.*; do
    [[ -e $stale ]] || continue
    log "removing leftover $stale"
    remove_tree "$stale"
done

WORK=$(mktemp -d "$OUTDIR/.tmp.XXXXXX")
readonly WORK
FAIL_LOG=          # set while a noisy command's output goes to a log file
cleanup() {
    local rc=$?
    if ((rc != 0)) && [[ -n $FAIL_LOG && -s $FAIL_LOG ]]; then
        log "last lines of the failed step's output:"
        tail -n 30 "$FAIL_LOG" >&2
    fi
    remove_tree "$WORK"
}
trap cleanup EXIT
# Turn fatal signals into a normal exit so the EXIT trap unmounts.
trap 'exit 130' INT
trap 'exit 143' TERM HUP

if ! is_current small; then
    log "building small"
    build_small "$WORK/small"
    verify_layout "$WORK/small" 1
    publish "$WORK/small" small
fi

if ! is_current mpi; then
    MIRROR=${DEBIAN_MIRROR:-$(find_mirror)}
    BASE_KEY=$( {
        declare -f build_base in_chroot
        printf '%s\n' "$MIRROR" "$SUITE" "$(dpkg --print-architecture)"
        dpkg-query -W debootstrap
    } | sha256sum | cut -d' ' -f1)
    BASE=$OUTDIR/.cache/base-$BASE_KEY
    if [[ ! -f $BASE/index.json ]]; then
        mkdir -p "$OUTDIR/.cache"
        build_base "$WORK/base" "$MIRROR"
        verify_layout "$WORK/base" 1
        mv -T "$WORK/base" "$BASE"
        # Only the current base is worth keeping.
        for old in "$OUTDIR"/.cache/base-*; do
            [[ $old == "$BASE" ]] || remove_tree "$old"
        done
    else
        log "debootstrap layer: cache hit"
    fi
    log "building mpi"
    build_mpi "$WORK/mpi" "$BASE"
    verify_layout "$WORK/mpi" 4 whiteouts
    publish "$WORK/mpi" mpi
fi

report small
report mpi
log "done in ${SECONDS}s"
