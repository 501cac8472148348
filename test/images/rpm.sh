#!/usr/bin/env bash
# Build the rpm test image, offline but for the Debian mirror: the mpi
# layout (Debian bookworm) plus one layer with Debian's rpm and dnf, an
# rpm database that knows one package, podman-hpc-base (it provides /bin/sh,
# as a distribution's own packages would: rpm checks a scriptlet's
# interpreter against the database, not the filesystem), and one local
# package, /srv/podman-hpc-rpms/podman-hpc-hello-1.0-1.noarch.rpm, built
# here with rpmbuild. So `dnf install ./podman-hpc-hello-...rpm` and
# `rpm -i` run their whole path (files owned by another user, a %post that
# chowns) with no network and no repository.
#
# Usage: rpm.sh OUTDIR     (root; OUTDIR/mpi from build.sh; writes OUTDIR/rpm)
#
# The layout carries a key (this script and the base layout's index) and is
# rebuilt only when that changes.
set -euo pipefail
shopt -s inherit_errexit

readonly KEYFILE=.podman-hpc-build-key
[[ $# -eq 1 ]] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
[[ $EUID -eq 0 ]] || { echo "$0: must run as root (chroot, file ownership)" >&2; exit 1; }
out=$(cd "$1" && pwd)
base=$out/mpi
[[ -f $base/index.json ]] || { echo "$0: no OCI layout at $base (run build.sh first)" >&2; exit 1; }
for cmd in umoci rpmbuild; do
    command -v "$cmd" >/dev/null || { echo "$0: $cmd not found (make deps)" >&2; exit 1; }
done
key=$(cat "$0" "$(dirname "$(readlink -f "$0")")/chroot.sh" "$base/index.json" | sha256sum | cut -d' ' -f1)
if [[ -f $out/rpm/$KEYFILE && $(<"$out/rpm/$KEYFILE") == "$key" ]]; then
    exit 0
fi

work=$(mktemp -d "$out/.rpm.XXXXXX")
root=$work/bundle/rootfs
cleanup() {
    local mp
    # Never rm -rf into a mounted /proc or /dev.
    while read -r mp; do umount -l "$mp" || true; done < <(awk -v d="$root/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    rm -rf --one-file-system "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP
readonly rpms=/srv/podman-hpc-rpms

# in_chroot ROOT CMD...: the image builds' own (chroot.sh).
readonly IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# shellcheck source=test/images/chroot.sh
. "$(dirname "$(readlink -f "$0")")/chroot.sh"

# The two packages, built on the host (rpmbuild is make deps's, for make rpm).
spec=$work/specs
mkdir -p "$spec"
cat >"$spec/base.spec" <<'EOF'
Name: podman-hpc-base
Version: 1.0
Release: 1
Summary: What the Debian base of podman-hpc's rpm test image provides, for rpm
License: MIT
BuildArch: noarch
AutoReqProv: no
Provides: /bin/sh
Provides: system-release(releasever) = 12
%description
Tells the image's rpm database that /bin/sh is there.
%files
EOF
cat >"$spec/hello.spec" <<'EOF'
Name: podman-hpc-hello
Version: 1.0
Release: 1
Summary: podman-hpc's offline rpm test package
License: MIT
BuildArch: noarch
AutoReqProv: no
%description
Installed by test/e2e/dnf_test.go inside a container.
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/var/lib/podman-hpc-hello
printf '#!/bin/sh\necho hello from podman-hpc-hello\n' >%{buildroot}/usr/bin/podman-hpc-hello
echo data >%{buildroot}/var/lib/podman-hpc-hello/owned
%post
chown daemon:daemon /var/lib/podman-hpc-hello
echo installed >/var/lib/podman-hpc-hello/state
%files
%attr(0755,root,root) /usr/bin/podman-hpc-hello
%dir %attr(0755,root,root) /var/lib/podman-hpc-hello
%attr(0644,daemon,daemon) /var/lib/podman-hpc-hello/owned
EOF
for s in base hello; do
    rpmbuild --quiet -bb --define "_topdir $work/rpmbuild" --define '_build_id_links none' "$spec/$s.spec" >"$work/rpmbuild.log" 2>&1 ||
        { tail -n 30 "$work/rpmbuild.log" >&2; exit 1; }
done

cp -a "$base" "$work/layout"
rm -f "$work/layout/$KEYFILE"
umoci unpack --image "$work/layout:latest" "$work/bundle"
log=$work/apt.log
if ! { in_chroot "$root" apt-get -q -o Acquire::Languages=none update &&
    in_chroot "$root" apt-get -q install -y --no-install-recommends rpm dnf &&
    in_chroot "$root" apt-get clean; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    exit 1
fi
find "$root/var/lib/apt/lists" -mindepth 1 -maxdepth 1 ! -name lock ! -name partial -delete
# Docs and translations are half of what these packages add.
find "$root/usr/share/doc" "$root/usr/share/man" "$root/usr/share/info" "$root/usr/share/locale" \
    -mindepth 1 -maxdepth 1 -exec rm -rf {} +
rm -f "$root"/var/cache/apt/*.bin
mkdir -p "$root$rpms"
install -m 0644 "$work"/rpmbuild/RPMS/noarch/podman-hpc-base-1.0-1.noarch.rpm "$root/tmp/"
install -m 0644 "$work"/rpmbuild/RPMS/noarch/podman-hpc-hello-1.0-1.noarch.rpm "$root$rpms/"
# Debian's rpm keeps its database in ~/.rpmdb; an RPM distribution's is
# the system's, and under --container-remap-root /root may be the user's home.
mkdir -p "$root/etc/rpm" "$root/var/lib/rpm"
echo '%_dbpath /var/lib/rpm' >"$root/etc/rpm/macros.dbpath"
in_chroot "$root" rpm -i --force-debian /tmp/podman-hpc-base-1.0-1.noarch.rpm
rm -f "$root/tmp/podman-hpc-base-1.0-1.noarch.rpm"
umoci repack --refresh-bundle --history.created_by "rpm, dnf, and the local package podman-hpc-hello" \
    --image "$work/layout:latest" "$work/bundle"
umoci gc --layout "$work/layout"
printf '%s\n' "$key" >"$work/layout/$KEYFILE"
chmod -R a+rX "$work/layout"
rm -rf --one-file-system "$out/rpm"
mv -T "$work/layout" "$out/rpm"
echo "rpm.sh: $out/rpm" >&2
