#!/bin/bash
# rpm.sh TARBALL OUTDIR: the source RPM made from the release tarball (make
# dist; its podman-hpc.spec), and the RPM rebuilt from that source RPM, as
# a site would (rpmbuild --rebuild: the plugin built against this host's
# slurm-devel headers), both in OUTDIR. Prints the RPM's path. Where rpm
# is not the host's package manager (Debian: its database is empty), the
# build dependencies go unchecked (--nodeps): make deps installs them.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 TARBALL OUTDIR" >&2; exit 2; }
tarball=$(readlink -f "$1")
mkdir -p "$2"
out=$(readlink -f "$2")
command -v rpmbuild >/dev/null || { echo "rpm.sh: rpmbuild not found (Debian: apt-get install rpm)" >&2; exit 1; }
top=$(mktemp -d "$out/.rpmbuild.XXXXXX")
trap 'rm -rf "$top"' EXIT
nodeps=()
[ -n "$(rpm -qa 2>/dev/null)" ] || nodeps=(--nodeps)
rpmbuild -ts --define "_topdir $top" "$tarball" >"$top/build.log" 2>&1 || { cat "$top/build.log" >&2; exit 1; }
srpm=$(echo "$top"/SRPMS/podman-hpc-*.src.rpm)
rpmbuild --rebuild "${nodeps[@]}" --define "_topdir $top" "$srpm" >>"$top/build.log" 2>&1 || {
	tail -40 "$top/build.log" >&2
	echo "rpm.sh: rpmbuild --rebuild failed" >&2
	exit 1
}
rpm=$(echo "$top"/RPMS/*/podman-hpc-*.rpm)
mv -f "$srpm" "$rpm" "$out/"
echo "$out/$(basename "$rpm")"
