#!/bin/bash
# pkg.sh - the packages as an admin gets them (make pkg-test): make deb and
# make rpm build both from source, from the release tarball (make dist);
# the versions agree and sort; each package requires the Slurm release of
# the headers its plugin was built against; the .deb's fields, files,
# conffiles and scriptlets are right; it installs on this machine with
# dpkg -i and enables the daemon's socket but not the plugin (srun knows no
# --container-image until the admin links the plugstack snippet in, and
# then does); the installed daemon serves through socket activation
# (systemd's systemd-socket-activate) and tells a notify socket READY=1
# (Type=notify); podman-hpcd status answers through the activated socket;
# the test cluster runs from the installed files (up.sh INSTALLED=/usr: the
# installed daemon on every node, the installed plugin in plugstack.conf)
# and a container step runs there as the test user; dpkg --purge removes it
# all. The .rpm, rebuilt from its source RPM, is checked with rpm -qp (it
# is not installed: this is Debian).
set -euo pipefail
repo=$(readlink -f "$(dirname "$0")/..")
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "pkg.sh: run as root (dpkg -i)" >&2; exit 1; }
for tool in dpkg-buildpackage dh rpmbuild rpm2cpio cpio systemd-socket-activate python3 srun pkg-config; do
	command -v "$tool" >/dev/null || { echo "pkg.sh: $tool not found; run 'make deps'" >&2; exit 1; }
done
fail=0
check() { # check WHAT COMMAND...: run COMMAND, report WHAT
	if "${@:2}" >/dev/null 2>&1; then echo "ok    $1"; else echo "FAIL  $1" >&2; fail=1; fi
}
if dpkg-query -W -f='${Status}' podman-hpc 2>/dev/null | grep -q 'install ok installed'; then
	echo "pkg.sh: the podman-hpc package is installed on this machine already; remove it first (dpkg --purge podman-hpc)" >&2
	exit 1
fi
# Where this test enables the plugin, as the admins' guide tells an admin to.
enable_link=/etc/slurm/plugstack.conf.d/podman-hpc.conf
if [ -e "$enable_link" ] || [ -L "$enable_link" ]; then
	echo "pkg.sh: $enable_link exists on this machine; this test makes and removes it itself" >&2
	exit 1
fi

rm -rf build/pkg
make --no-print-directory deb rpm >&2
version=$(contrib/pkg/version.sh)
deb=build/pkg/podman-hpc_${version}-1_$(dpkg --print-architecture).deb
rpm=build/pkg/podman-hpc-$version-1.$(rpm --eval '%{_arch}').rpm srpm=build/pkg/podman-hpc-$version-1.src.rpm
# The Slurm release of the headers both were built against (0xMMmmuu), and
# the next one, which neither may take.
n=$(($(sed -n 's/^#define[[:space:]]*SLURM_VERSION_NUMBER[[:space:]]*//p' /usr/include/slurm/slurm_version.h)))
slurm_release=$(printf '%d.%02d' $((n >> 16)) $(((n >> 8) & 255)))
slurm_next=$(printf '%d.%02d' $((n >> 16)) $((((n >> 8) & 255) + 1)))
work=$(mktemp -d)
# The daemon's state_dir is in it: others must be able to search the way
# there (check-config refuses it otherwise; runtimes work in a user
# namespace that maps only the job's user).
chmod 0711 "$work"
daemon=
cluster=
cleanup() {
	[ -z "$daemon" ] || kill "$daemon" 2>/dev/null || true
	[ -z "$cluster" ] || test/cluster/down.sh >/dev/null 2>&1 || true
	rm -f "$enable_link"
	dpkg --purge podman-hpc >/dev/null 2>&1 || true
	cp "$work/daemon.log" build/pkg/ 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# Versions: one release in VERSION, the spec, debian/changelog and
# CHANGELOG.md; the packages' is contrib/pkg/version.sh's; and for dpkg and
# rpm alike the release sorts after the 0.1.0+git<hash> builds before it,
# and a snapshot between its release and the next.
release=$(cat VERSION)
check "VERSION is X.Y.Z" grep -Eqx '[0-9]+\.[0-9]+\.[0-9]+' VERSION
check "the spec's Version is VERSION" test "$(sed -n 's/^Version:[[:space:]]*//p' podman-hpc.spec)" = "$release"
check "debian/changelog's version is VERSION" test "$(dpkg-parsechangelog -l debian/changelog -S Version)" = "$release-1"
check "CHANGELOG.md has VERSION" grep -q "^## $release " CHANGELOG.md
check "deb version" test "$(dpkg-deb -f "$deb" Version)" = "$version-1"
check "rpm version" test "$(rpm -qp --qf '%{VERSION}-%{RELEASE}' "$rpm" 2>/dev/null)" = "$version-1"
IFS=. read -r major minor patch <VERSION
order=(0.1.0+git5af16b5 "$release" "$release+1.g0123abcd" "$release+12.g0123abcd" "$major.$minor.$((patch + 1))")
sorted() { # sorted dpkg|rpm: each of order sorts before the next
	local i
	for ((i = 0; i + 1 < ${#order[@]}; i++)); do
		case $1 in
		dpkg) dpkg --compare-versions "${order[i]}-1" lt "${order[i + 1]}-1" || return 1 ;;
		rpm) [ "$(rpm --eval "%{lua: print(rpm.vercmp('${order[i]}', '${order[i + 1]}'))}")" = -1 ] || return 1 ;;
		esac
	done
}
check "versions sort for dpkg: ${order[*]}" sorted dpkg
check "versions sort for rpm: ${order[*]}" sorted rpm

# Built from source, against this Slurm's headers.
check "release tarball vendors the Go modules" sh -c "tar -tzf build/pkg/podman-hpc-$version.tar.gz | grep -qx 'podman-hpc-$version/vendor/modules.txt'"
check "Debian source package (.dsc) build-depends on Slurm's headers" sh -c "grep '^Build-Depends:' build/pkg/podman-hpc_$version-1.dsc | grep -q libslurm-dev"
check "deb depends on Slurm $slurm_release, not $slurm_next" sh -c "dpkg-deb -f '$deb' Depends | grep -qF 'slurm-wlm-basic-plugins (>= $slurm_release), slurm-wlm-basic-plugins (<< $slurm_next)'"
rpm -qpl "$srpm" >"$work/srpmfiles" 2>/dev/null
check "source RPM holds the tarball and the spec" test "$(sort "$work/srpmfiles" | tr '\n' ' ')" = "podman-hpc-$version.tar.gz podman-hpc.spec "
check "source RPM build-requires slurm-devel" sh -c "rpm -qpR '$srpm' 2>/dev/null | grep -qx slurm-devel"
check "rpm rebuilt from the source RPM" test "$(rpm -qp --qf '%{SOURCERPM}' "$rpm" 2>/dev/null)" = "$(basename "$srpm")"
rpm -qpR "$rpm" >"$work/rpmrequires" 2>/dev/null
check "rpm requires Slurm $slurm_release" grep -Eqx "slurm(\(.*\))? >= $slurm_release" "$work/rpmrequires"
check "rpm requires no Slurm $slurm_next" grep -Eqx "slurm(\(.*\))? < $slurm_next" "$work/rpmrequires"

# The .deb, as dpkg sees it.
unitdir=$(pkg-config --variable=systemdsystemunitdir systemd)
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/files"
for f in /usr/bin/podman-hpcd /usr/bin/podman-hpc-init /usr/bin/podman-hpc-asuser /usr/lib/slurm/spank_podman_hpc.so \
	"$unitdir/podman-hpcd.service" "$unitdir/podman-hpcd.socket" /etc/podman-hpc/podman-hpcd.conf \
	/usr/share/podman-hpc/podman-hpc.conf /usr/libexec/podman-hpc/epilog.sh /usr/share/podman-hpc/podman-hpcd.conf.example \
	/usr/share/podman-hpc/README.md /usr/share/podman-hpc/docs/admin-guide.md \
	/usr/share/man/man1/podman-hpc.1.gz /usr/share/man/man5/podman-hpcd.conf.5.gz /usr/share/man/man8/podman-hpcd.8.gz; do
	check "deb holds $f" grep -qx "$f" "$work/files"
done
check "deb puts nothing where Slurm reads (/etc/slurm)" sh -c "! grep -q '^/etc/slurm' '$work/files'"
dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$work" ./conffiles ./postinst ./prerm ./postrm
check "deb conffiles: the daemon's config" test "$(sort "$work/conffiles" | tr '\n' ' ')" = "/etc/podman-hpc/podman-hpcd.conf "
check "deb postinst enables the socket" grep -q "deb-systemd-helper enable 'podman-hpcd.socket'" "$work/postinst"
check "deb postinst restarts a running daemon on upgrade" grep -q "deb-systemd-invoke try-restart 'podman-hpcd.service'" "$work/postinst"
check "deb postrm purges the cache" grep -q 'rm -rf /var/lib/podman-hpc' "$work/postrm"

# Installed.
check "dpkg -i" dpkg -i "$deb"
check "installed podman-hpcd runs" sh -c '/usr/bin/podman-hpcd version | grep -q "^podman-hpcd "'
check "unit ExecStart names /usr/bin/podman-hpcd" grep -q '^ExecStart=/usr/bin/podman-hpcd serve ' "$unitdir/podman-hpcd.service"
check "plugstack snippet names the installed plugin and daemon" grep -qx 'required /usr/lib/slurm/spank_podman_hpc.so podman_hpcd=/usr/bin/podman-hpcd' /usr/share/podman-hpc/podman-hpc.conf
check "socket enabled (sockets.target.wants)" test -L /etc/systemd/system/sockets.target.wants/podman-hpcd.socket
check "service not enabled (the socket starts it)" test ! -e /etc/systemd/system/multi-user.target.wants/podman-hpcd.service

# The plugin is the admin's to enable: srun, with a plugstack.conf that
# includes plugstack.conf.d/*.conf (Debian's does), has no --container-*
# option until the snippet is linked there, as the admins' guide says.
cat >"$work/slurm.conf" <<CONF
ClusterName=pkgtest
SlurmctldHost=localhost
PlugStackConfig=$work/plugstack.conf
NodeName=localhost CPUs=1
PartitionName=p Nodes=localhost
CONF
echo "include ${enable_link%/*}/*.conf" >"$work/plugstack.conf"
srun_help_has() { # srun_help_has OPTION: srun --help (work's slurm.conf) lists OPTION
	local out
	out=$(SLURM_CONF=$work/slurm.conf timeout 20 srun --help 2>&1) || return 1
	grep -q -- "$1" <<<"$out"
}
srun_help_lacks() { ! srun_help_has "$@"; }
check "srun --help runs with the package installed" srun_help_has --nodes
check "installing does not enable the plugin" srun_help_lacks --container-image
ln -s /usr/share/podman-hpc/podman-hpc.conf "$enable_link"
check "the admin enables it: ln -s /usr/share/podman-hpc/podman-hpc.conf ${enable_link%/*}/" srun_help_has --container-image
rm -f "$enable_link"

# Socket activation and readiness, as systemd would start it: the socket
# passed as fd 3 (LISTEN_FDS), NOTIFY_SOCKET read here.
cat >"$work/podman-hpcd.conf" <<CONF
state_dir = $work/state
cache_dir = $work/images
CONF
sock=$work/podman-hpcd.sock notify=$work/notify.sock
python3 - "$notify" >"$work/notified" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(60)
print(s.recv(4096).decode())
PY
notifier=$!
for _ in $(seq 50); do [ -S "$notify" ] && break; sleep 0.1; done
# In a mount namespace of its own: what the daemon mounts goes with it.
unshare --mount --propagation private systemd-socket-activate -l "$sock" -E NOTIFY_SOCKET="$notify" \
	/usr/bin/podman-hpcd serve --config "$work/podman-hpcd.conf" >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
check "status through the activated socket" sh -c "/usr/bin/podman-hpcd status --socket '$sock' | grep -q 'podman-hpcd'"
check "the daemon says the package's version" sh -c "/usr/bin/podman-hpcd status --socket '$sock' | grep -qF 'podman-hpcd $version '"
wait "$notifier" || true
check "READY=1 on the notify socket" grep -q 'READY=1' "$work/notified"
kill "$daemon" 2>/dev/null || true
wait "$daemon" 2>/dev/null || true
daemon=

# The test cluster from the installed files (PHPC_LAB_ID picks which).
cluster=1
if INSTALLED=/usr NODES=1 test/cluster/up.sh >"$work/up.log" 2>&1; then
	echo "ok    test cluster up from the installed files"
	env=build/cluster${PHPC_LAB_ID:-}.env
	lab=$(sed -n 's/^export LAB=//p' "$env")
	image=$(sed -n 's/^export SMALL_IMAGE=//p' "$env")
	check "plugstack.conf names the installed plugin" grep -q "^required /usr/lib/slurm/spank_podman_hpc.so " "$lab/etc/plugstack.conf"
	check "node1's daemon is the installed binary" test "$(readlink "/proc/$(cat "$lab/run/node1/podman-hpcd.pid")/exe")" = /usr/bin/podman-hpcd
	check "a container step as the test user" sh -c "runuser -u phpc-user -- env SLURM_CONF='$lab/etc/slurm.conf' srun -N1 --container-image='$image' cat /etc/os-release | grep -q '^ID=podman-hpc-small'"
else
	echo "FAIL  test cluster up from the installed files: $(tail -3 "$work/up.log")" >&2
	fail=1
fi
check "test cluster down" test/cluster/down.sh
cluster=

# Removed.
check "dpkg --purge" dpkg --purge podman-hpc
check "files gone" test ! -e /usr/bin/podman-hpcd -a ! -e /etc/podman-hpc/podman-hpcd.conf -a ! -e /usr/lib/slurm/spank_podman_hpc.so
check "socket no longer enabled" test ! -e /etc/systemd/system/sockets.target.wants/podman-hpcd.socket

# The .rpm, as rpm sees it: the plugin where Slurm's RPMs keep plugins.
libdir=$(rpm --eval '%{_libdir}')
rpm -qlp "$rpm" >"$work/rpmfiles" 2>/dev/null
for f in /usr/bin/podman-hpcd /usr/bin/podman-hpc-init /usr/bin/podman-hpc-asuser "$libdir/slurm/spank_podman_hpc.so" \
	/usr/lib/systemd/system/podman-hpcd.service /usr/lib/systemd/system/podman-hpcd.socket /usr/share/podman-hpc/podman-hpc.conf \
	/usr/share/podman-hpc/docs/admin-guide.md; do
	check "rpm holds $f" grep -qx "$f" "$work/rpmfiles"
done
# (compressed or not, as the build host's rpm macros do it)
for f in /usr/share/man/man1/podman-hpc.1 /usr/share/man/man5/podman-hpcd.conf.5 /usr/share/man/man8/podman-hpcd.8; do
	check "rpm holds $f" grep -Eqx "$f(\.gz|\.bz2|\.xz|\.zst)?" "$work/rpmfiles"
done
check "rpm puts nothing where Slurm reads (/etc/slurm)" sh -c "! grep -q '^/etc/slurm' '$work/rpmfiles'"
mkdir "$work/rpmroot"
rpm2cpio "$rpm" | (cd "$work/rpmroot" && cpio -id --quiet ./usr/share/podman-hpc/podman-hpc.conf)
check "rpm's plugstack snippet names its plugin and daemon" grep -qx "required $libdir/slurm/spank_podman_hpc.so podman_hpcd=/usr/bin/podman-hpcd" "$work/rpmroot/usr/share/podman-hpc/podman-hpc.conf"
check "rpm config files" test "$(rpm -qp --configfiles "$rpm" 2>/dev/null | sort | tr '\n' ' ')" = "/etc/podman-hpc/podman-hpcd.conf "
check "rpm %post enables the socket" sh -c "rpm -qp --scripts '$rpm' 2>/dev/null | grep -q 'systemctl enable --now podman-hpcd.socket'"

[ "$fail" = 0 ] || { echo "pkg.sh: FAILED (daemon log: build/pkg/daemon.log)" >&2; exit 1; }
echo "pkg.sh: packages ok"
