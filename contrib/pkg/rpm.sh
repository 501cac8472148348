#!/bin/bash
# rpm.sh ROOT VERSION OUTDIR: make the RPM of the installed tree ROOT
# (make install DESTDIR=ROOT PREFIX=/usr SYSCONFDIR=/etc) with rpmbuild and
# contrib/pkg/podman-hpc.spec, as OUTDIR/podman-hpc-VERSION.ARCH.rpm.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 ROOT VERSION OUTDIR" >&2; exit 2; }
root=$(readlink -f "$1") version=$2 out=$(readlink -f "$3")
here=$(dirname "$(readlink -f "$0")")
command -v rpmbuild >/dev/null || { echo "rpm.sh: rpmbuild not found (Debian: apt-get install rpm)" >&2; exit 1; }
top=$(mktemp -d "$out/.rpmbuild.XXXXXX")
trap 'rm -rf "$top"' EXIT
rpmbuild --quiet -bb --define "_topdir $top" --define "pkg_version $version" --define "pkg_stage $root" \
	--define "_build_id_links none" "$here/podman-hpc.spec" >&2
arch=$(rpm --eval '%{_arch}')
rpm=$out/podman-hpc-$version.$arch.rpm
mv "$top"/RPMS/"$arch"/podman-hpc-"$version"-1."$arch".rpm "$rpm"
echo "$rpm"
