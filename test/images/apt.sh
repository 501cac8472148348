#!/usr/bin/env bash
# Build the apt test image, fully offline: the mpi layout (Debian bookworm,
# with apt) plus one layer holding a local apt repository with one small
# package, podman-hpc-hello, built here with dpkg-deb, and a sources list
# that names only that repository. So `apt-get update && apt-get install
# podman-hpc-hello` runs apt's whole path (its methods, their drop to the
# _apt user, dpkg and the package's maintainer script, which chowns) with
# no network.
#
# Usage: apt.sh OUTDIR     (root; OUTDIR/mpi from build.sh; writes OUTDIR/apt)
#
# The layout carries a key (this script and the base layout's index) and is
# rebuilt only when that changes.
set -euo pipefail
shopt -s inherit_errexit

readonly KEYFILE=.podman-hpc-build-key
[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "$0: must run as root (file ownership)" >&2; exit 1; }
out=$(cd "$1" && pwd)
base=$out/mpi
[[ -f $base/index.json ]] || { echo "$0: no OCI layout at $base (run build.sh first)" >&2; exit 1; }
for cmd in umoci dpkg-deb dpkg-scanpackages; do
    command -v "$cmd" >/dev/null || { echo "$0: $cmd not found" >&2; exit 1; }
done
key=$(cat "$0" "$base/index.json" | sha256sum | cut -d' ' -f1)
if [[ -f $out/apt/$KEYFILE && $(<"$out/apt/$KEYFILE") == "$key" ]]; then
    exit 0
fi

work=$(mktemp -d "$out/.apt.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
root=$work/bundle/rootfs
repo=/srv/podman-hpc-repo

# The package: a program, a directory its maintainer script gives to a
# system user (dpkg and the script chown as root would), and that script.
pkg=$work/pkg
mkdir -p "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/var/lib/podman-hpc-hello"
cat >"$pkg/DEBIAN/control" <<'EOF'
Package: podman-hpc-hello
Version: 1.0
Architecture: all
Maintainer: podman-hpc tests <root@localhost>
Description: podman-hpc's offline apt test package
 Installed by test/e2e/apt_test.go inside a container.
EOF
cat >"$pkg/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
chown daemon:daemon /var/lib/podman-hpc-hello
echo installed >/var/lib/podman-hpc-hello/state
EOF
chmod 0755 "$pkg/DEBIAN/postinst"
printf '#!/bin/sh\necho hello from podman-hpc-hello\n' >"$pkg/usr/bin/podman-hpc-hello"
chmod 0755 "$pkg/usr/bin/podman-hpc-hello"

cp -a "$base" "$work/layout"
rm -f "$work/layout/$KEYFILE"
umoci unpack --image "$work/layout:latest" "$work/bundle"
mkdir -p "$root$repo"
dpkg-deb --root-owner-group --build "$pkg" "$root$repo/podman-hpc-hello_1.0_all.deb" >/dev/null
(cd "$root$repo" && dpkg-scanpackages --multiversion . /dev/null 2>/dev/null >Packages)
# A Release file with the index's checksum (unsigned: the source says
# trusted=yes), so apt takes the path of a real repository.
{
    echo "Origin: podman-hpc"
    echo "Label: podman-hpc tests"
    echo "Date: $(date -u -R -d @0)"
    echo "SHA256:"
    printf ' %s %s Packages\n' "$(sha256sum <"$root$repo/Packages" | cut -d' ' -f1)" "$(stat -c %s "$root$repo/Packages")"
} >"$root$repo/Release"
rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
echo "deb [trusted=yes] file:$repo ./" >"$root/etc/apt/sources.list.d/podman-hpc.list"
umoci repack --refresh-bundle --history.created_by "local apt repository with podman-hpc-hello" \
    --image "$work/layout:latest" "$work/bundle"
umoci gc --layout "$work/layout"
printf '%s\n' "$key" >"$work/layout/$KEYFILE"
chmod -R a+rX "$work/layout"
rm -rf --one-file-system "$out/apt"
mv -T "$work/layout" "$out/apt"
echo "apt.sh: $out/apt" >&2
