#!/bin/bash
# deb.sh ROOT VERSION OUTDIR: make the Debian package of the installed tree
# ROOT (make install DESTDIR=ROOT PREFIX=/usr SYSCONFDIR=/etc) with
# dpkg-deb, as OUTDIR/podman-hpc_VERSION_ARCH.deb. The maintainer scripts
# and control fields are contrib/pkg/debian/; every file under /etc is a
# conffile (an admin's edits survive upgrades).
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 ROOT VERSION OUTDIR" >&2; exit 2; }
root=$1 version=$2 out=$3
here=$(dirname "$(readlink -f "$0")")
arch=$(dpkg --print-architecture)
command -v dpkg-deb >/dev/null || { echo "deb.sh: dpkg-deb not found (dpkg)" >&2; exit 1; }

mkdir -p "$root/DEBIAN" "$out"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" \
	-e "s/@SIZE@/$(du -sk --exclude=DEBIAN "$root" | cut -f1)/" "$here/debian/control" >"$root/DEBIAN/control"
(cd "$root" && find etc -type f | sort | sed 's|^|/|') >"$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do
	install -m 0755 "$here/debian/$s" "$root/DEBIAN/$s"
done
deb=$out/podman-hpc_${version}_${arch}.deb
dpkg-deb --root-owner-group --build "$root" "$deb" >/dev/null
echo "$deb"
