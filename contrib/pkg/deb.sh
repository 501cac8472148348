#!/bin/bash
# deb.sh TARBALL OUTDIR: the Debian packages built from source, from the
# release tarball (make dist) as its .orig.tar.gz, with dpkg-buildpackage
# and debian/ (debhelper): the source package (.dsc) and the binary ones
# (.deb: the plugin built against the installed Slurm headers), in OUTDIR.
# Prints the .deb's path.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 TARBALL OUTDIR" >&2; exit 2; }
tarball=$(readlink -f "$1")
mkdir -p "$2"
out=$(readlink -f "$2")
for tool in dpkg-buildpackage dh; do
	command -v "$tool" >/dev/null || { echo "deb.sh: $tool not found (Debian: apt-get install dpkg-dev debhelper; or make deps)" >&2; exit 1; }
done
name=$(basename "$tarball" .tar.gz)
version=${name#podman-hpc-}
work=$(mktemp -d "$out/.debbuild.XXXXXX")
trap 'rm -rf "$work"' EXIT
ln -s "$tarball" "$work/podman-hpc_$version.orig.tar.gz"
tar -xzf "$tarball" -C "$work"
(cd "$work/$name" && dpkg-buildpackage --build=full --no-sign) >"$work/build.log" 2>&1 || {
	tail -40 "$work/build.log" >&2
	echo "deb.sh: dpkg-buildpackage failed" >&2
	exit 1
}
arch=$(dpkg --print-architecture)
for f in "$work"/podman-hpc*_"$version"-*; do
	mv -f "$f" "$out/"
done
# The .dsc's upstream tarball, beside it.
ln -sfn "$(basename "$tarball")" "$out/podman-hpc_$version.orig.tar.gz"
echo "$out/podman-hpc_$version-1_$arch.deb"
