#!/bin/bash
# pkg.sh - the packages as an admin gets them (make pkg-test): make deb and
# make rpm build; the .deb's fields, files, conffiles and scriptlets are
# right; it installs on this machine with dpkg -i, enables the socket, and
# the installed daemon serves through socket activation (systemd's
# systemd-socket-activate) and tells a notify socket READY=1 (Type=notify);
# podman-hpcd status answers through the activated socket; the test cluster
# runs from the installed files (up.sh INSTALLED=/usr: the installed daemon
# on every node, the installed plugin in plugstack.conf) and a container
# step runs there as the test user; dpkg --purge removes it all. The .rpm's files, config files and scriptlets are checked
# with rpm -qp (it is not installed: this is Debian).
set -euo pipefail
repo=$(readlink -f "$(dirname "$0")/..")
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "pkg.sh: run as root (dpkg -i)" >&2; exit 1; }
for tool in dpkg-deb rpmbuild systemd-socket-activate python3; do
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

rm -rf build/pkg
make --no-print-directory deb rpm >&2
deb=$(echo build/pkg/podman-hpc_*.deb) rpm=$(echo build/pkg/podman-hpc-*.rpm)
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
	dpkg --purge podman-hpc >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# The .deb, as dpkg sees it.
check "deb file name" test -f "$deb" -a "$(basename "$deb")" = "podman-hpc_$(dpkg-deb -f "$deb" Version)_$(dpkg --print-architecture).deb"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$work/files"
for f in /usr/bin/podman-hpcd /usr/bin/podman-hpc-init /usr/bin/podman-hpc-asuser /usr/lib/slurm/spank_podman_hpc.so \
	/usr/lib/systemd/system/podman-hpcd.service /usr/lib/systemd/system/podman-hpcd.socket \
	/etc/slurm/plugstack.conf.d/podman-hpc.conf /etc/podman-hpc/podman-hpcd.conf \
	/usr/libexec/podman-hpc/epilog.sh /usr/share/podman-hpc/podman-hpcd.conf.example /usr/share/podman-hpc/README.md; do
	check "deb holds $f" grep -qx "$f" "$work/files"
done
dpkg-deb --ctrl-tarfile "$deb" | tar -x -C "$work" ./conffiles ./postinst ./prerm ./postrm
check "deb conffiles: the config and the plugstack snippet" \
	test "$(sort "$work/conffiles" | tr '\n' ' ')" = "/etc/podman-hpc/podman-hpcd.conf /etc/slurm/plugstack.conf.d/podman-hpc.conf "
check "deb postinst enables the socket" grep -q 'deb-systemd-helper enable podman-hpcd.socket' "$work/postinst"

# Installed.
check "dpkg -i" dpkg -i "$deb"
check "installed podman-hpcd runs" sh -c '/usr/bin/podman-hpcd version | grep -q "^podman-hpcd "'
check "unit ExecStart names /usr/bin/podman-hpcd" grep -q '^ExecStart=/usr/bin/podman-hpcd serve ' /usr/lib/systemd/system/podman-hpcd.service
check "plugstack snippet names the installed plugin" grep -qx 'required /usr/lib/slurm/spank_podman_hpc.so' /etc/slurm/plugstack.conf.d/podman-hpc.conf
check "socket enabled (sockets.target.wants)" test -L /etc/systemd/system/sockets.target.wants/podman-hpcd.socket

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

# The .rpm, as rpm sees it.
check "rpm file name" test -f "$rpm" -a "$(basename "$rpm")" = "podman-hpc-$(rpm -qp --qf '%{VERSION}.%{ARCH}' "$rpm").rpm"
rpm -qlp "$rpm" >"$work/rpmfiles" 2>/dev/null
for f in /usr/bin/podman-hpcd /usr/bin/podman-hpc-init /usr/bin/podman-hpc-asuser /usr/lib/slurm/spank_podman_hpc.so /usr/lib/systemd/system/podman-hpcd.socket; do
	check "rpm holds $f" grep -qx "$f" "$work/rpmfiles"
done
check "rpm config files" test "$(rpm -qp --configfiles "$rpm" 2>/dev/null | sort | tr '\n' ' ')" = "/etc/podman-hpc/podman-hpcd.conf /etc/slurm/plugstack.conf.d/podman-hpc.conf "
check "rpm %post enables the socket" sh -c "rpm -qp --scripts '$rpm' 2>/dev/null | grep -q 'systemctl enable --now podman-hpcd.socket'"

[ "$fail" = 0 ] || { echo "pkg.sh: FAILED (daemon log: $work/daemon.log)" >&2; exit 1; }
echo "pkg.sh: packages ok"
