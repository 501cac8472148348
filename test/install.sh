#!/bin/bash
# install.sh - make install and the systemd units, as shipped (make
# install-test, in make check): make install DESTDIR=... PREFIX=/usr writes
# the tree a package holds; the installed podman-hpcd.service names
# /usr/bin/podman-hpcd in ExecStart, is Type=notify and KillMode=process
# (a stop or an upgrade leaves running steps alone); the daemon started as
# the unit's ExecStart says, with the socket the installed .socket unit
# names passed by systemd-socket-activate (LISTEN_FDS), tells NOTIFY_SOCKET
# READY=1; podman-hpcd status answers through the activated socket; the
# opt-in metrics listener serves; on a bad config the daemon refuses to
# start, one line per problem naming the key, before READY; and on the
# journal its lines carry their priorities (journalctl -p err).
set -euo pipefail
repo=$(readlink -f "$(dirname "$0")/..")
cd "$repo"
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root (the daemon mounts)" >&2; exit 1; }
for tool in systemd-socket-activate python3 curl unshare; do
	command -v "$tool" >/dev/null || { echo "install.sh: $tool not found; run 'make deps'" >&2; exit 1; }
done
fail=0
check() { # check WHAT COMMAND...: run COMMAND, report WHAT
	if "${@:2}" >/dev/null 2>&1; then echo "ok    $1"; else echo "FAIL  $1" >&2; fail=1; fi
}
work=$(mktemp -d)
# The daemon's state_dir is in it: others must be able to search the way
# there (check-config refuses it otherwise; runtimes work in a user
# namespace that maps only the job's user).
chmod 0711 "$work"
daemon='' notifier=''
cleanup() {
	[ -z "$daemon" ] || kill "$daemon" 2>/dev/null || true
	[ -z "$notifier" ] || kill "$notifier" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
root=$work/root

make --no-print-directory install DESTDIR="$root" PREFIX=/usr SYSCONFDIR=/etc >/dev/null
unit=$root/usr/lib/systemd/system/podman-hpcd.service socket_unit=$root/usr/lib/systemd/system/podman-hpcd.socket
for f in /usr/bin/podman-hpcd /usr/bin/podman-hpc-init /usr/bin/podman-hpc-asuser /usr/lib/slurm/spank_podman_hpc.so /usr/lib/systemd/system/podman-hpcd.service \
	/usr/lib/systemd/system/podman-hpcd.socket /etc/podman-hpc/podman-hpcd.conf /etc/slurm/plugstack.conf.d/podman-hpc.conf; do
	check "make install writes $f" test -e "$root$f"
done
snippet=$root/etc/slurm/plugstack.conf.d/podman-hpc.conf
check "the plugstack snippet names the plugin and podman_hpcd= (one digest per job)" grep -qx 'required /usr/lib/slurm/spank_podman_hpc.so podman_hpcd=/usr/bin/podman-hpcd' "$snippet"
# Another PREFIX: the snippet names that tree's binaries, not the plugin's default (/usr/bin).
make --no-print-directory install DESTDIR="$work/opt" PREFIX=/opt/phpc SYSCONFDIR=/etc >/dev/null
check "PREFIX=/opt/phpc: the snippet names /opt/phpc's plugin and daemon" grep -qx 'required /opt/phpc/lib/slurm/spank_podman_hpc.so podman_hpcd=/opt/phpc/bin/podman-hpcd' "$work/opt/etc/slurm/plugstack.conf.d/podman-hpc.conf"
rm -rf "$work/opt"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
check "ExecStart names /usr/bin/podman-hpcd" test "${exec_start%% *}" = /usr/bin/podman-hpcd
check "Type=notify" grep -qx 'Type=notify' "$unit"
check "KillMode=process (a stop leaves the steps)" grep -qx 'KillMode=process' "$unit"
check "the service requires its socket" grep -qx 'Requires=podman-hpcd.socket' "$unit"
listen=$(sed -n 's/^ListenStream=//p' "$socket_unit")
check "the socket unit listens on the daemon's default socket" test "$listen" = /run/podman-hpc/podman-hpcd.sock
check "the installed config passes check-config" "$root/usr/bin/podman-hpcd" check-config --config "$root/etc/podman-hpc/podman-hpcd.conf"

# As systemd starts it: ExecStart's command from the installed tree, the
# socket passed (fd 3), readiness on NOTIFY_SOCKET. The config is the
# installed one with node-local paths of this test's and a metrics port.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
conf=$work/podman-hpcd.conf
cp "$root/etc/podman-hpc/podman-hpcd.conf" "$conf"
printf 'state_dir = %s\ncache_dir = %s\nmetrics_listen = 127.0.0.1:%s\n' "$work/state" "$work/images" "$port" >>"$conf"
read -r -a argv <<<"$exec_start"
argv[0]=$root${argv[0]}
for i in "${!argv[@]}"; do [ "${argv[$i]}" != /etc/podman-hpc/podman-hpcd.conf ] || argv[i]=$conf; done

start() { # start CONFIG: the daemon as the unit runs it, activated; sets daemon, notifier
	local sock=$work/podman-hpcd.sock notify=$work/notify.sock
	rm -f "$sock" "$notify" "$work/notified"
	python3 - "$notify" >"$work/notified" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(30)
try:
    print(s.recv(4096).decode())
except socket.timeout:
    pass
PY
	notifier=$!
	for _ in $(seq 50); do [ -S "$notify" ] && break; sleep 0.1; done
	# In a mount namespace of its own: what the daemon mounts goes with it.
	unshare --mount --propagation private systemd-socket-activate -l "$sock" -E NOTIFY_SOCKET="$notify" \
		"${argv[@]/$conf/$1}" >"$work/daemon.log" 2>&1 &
	daemon=$!
	for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
}
start "$conf"
sock=$work/podman-hpcd.sock
check "status through the activated socket" sh -c "'$root/usr/bin/podman-hpcd' status --socket '$sock' >'$work/status'"
check "status shows the cache and its limits" grep -q "^cache: $work/images, 0 images, .*; limits: total " "$work/status"
check "status shows the runtime" grep -q '^runtime: ' "$work/status"
wait "$notifier" || true
notifier=
check "READY=1 on the notify socket" grep -q 'READY=1' "$work/notified"
check "metrics on 127.0.0.1:$port" sh -c "curl -sf http://127.0.0.1:$port/metrics | grep -q '^podman_hpc_build_info{version=\"'"
kill "$daemon" 2>/dev/null || true
wait "$daemon" 2>/dev/null || true
daemon=

# A bad config: no READY, the daemon exits naming each problem.
bad=$work/bad.conf
cp "$conf" "$bad"
printf 'cache_dirr = /x\nruntime = /no/such/runtime\n' >>"$bad"
start "$bad"
# systemd-socket-activate runs the daemon at the first connection.
"$root/usr/bin/podman-hpcd" status --socket "$work/podman-hpcd.sock" >/dev/null 2>&1 || true
rc=0
wait "$daemon" || rc=$?
daemon=
kill "$notifier" 2>/dev/null || true
wait "$notifier" || true
notifier=
check "a bad config: the daemon exits 1" test "$rc" = 1
check "a bad config: no READY" test ! -s "$work/notified"
check "a bad config: the unknown key named" grep -q "bad.conf:[0-9]*: unknown key \"cache_dirr\"" "$work/daemon.log"
check "a bad config: the missing runtime named, with the fix" grep -q '^runtime "/no/such/runtime": not found or not executable; install it, or set runtime = auto$' "$work/daemon.log"

# On the journal, as systemd runs it: each line has its syslog priority
# (journalctl -p filters), JSON with log_format = json. A journald of this
# test's own, in a mount namespace whose /run/systemd, /run/log and
# /var/log/journal are fresh tmpfs; systemd-cat connects the daemon's
# stdout and stderr to it, and JOURNAL_STREAM names that stream, as
# systemd's does for a unit. The good config warns (a site image store
# not there); the bad one stops the daemon with error lines.
journald=
for p in /usr/lib/systemd/systemd-journald /lib/systemd/systemd-journald; do [ -x "$p" ] && journald=$p && break; done
jconf=$work/journal.conf
cp "$conf" "$jconf"
printf 'log_format = json\nshared_store = %s\n' "$work/no-store" >>"$jconf"
sed -i '/^metrics_listen/d' "$jconf"
if [ -z "$journald" ] || ! command -v systemd-cat >/dev/null || ! command -v journalctl >/dev/null; then
	echo "FAIL  systemd-journald, systemd-cat or journalctl not found; run 'make deps'" >&2
	fail=1
else
	unshare --mount --propagation private bash -s "$journald" "$root/usr/bin/podman-hpcd" "$jconf" "$bad" "$work" >"$work/journal.out" 2>&1 <<'SH' || true
set -u
journald=$1 bin=$2 good=$3 bad=$4 work=$5
for d in /run/systemd /run/log /var/log/journal; do mkdir -p "$d" && mount -t tmpfs tmpfs "$d"; done
"$journald" & j=$!
for _ in $(seq 50); do [ -S /run/systemd/journal/stdout ] && break; sleep 0.1; done
# As a unit's ExecStart: JOURNAL_STREAM is the stream's DEVICE:INODE.
# systemd-cat and sh exec: $! is the daemon's pid.
serve=(systemd-cat -t podman-hpcd-test sh -c 'JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) exec "$0" serve --config "$1" --socket "$2"' "$bin")
"${serve[@]}" "$good" "$work/journal.sock" & d=$!
for _ in $(seq 100); do "$bin" status --socket "$work/journal.sock" >/dev/null 2>&1 && break; sleep 0.1; done
kill "$d"; wait "$d"
"${serve[@]}" "$bad" "$work/journal.sock"
sleep 0.5 # journald reads the stream as it likes
for p in err warning info; do
	echo "== -p $p"
	journalctl -D /run/log/journal -t podman-hpcd-test -o cat -p "$p"
done
kill "$j"; wait "$j"
SH
	# journal.out: "== -p PRIORITY" and the lines journalctl shows for it.
	section() { sed -n "/^== -p $1\$/,/^== /p" "$work/journal.out" | sed '1d;/^== /d'; }
	journal_err() {
		local s
		s=$(section err)
		grep -q '^podman-hpcd: .*bad.conf: the config has errors' <<<"$s" &&
			grep -q 'bad.conf:[0-9]*: unknown key "cache_dirr"' <<<"$s" &&
			grep -q '^runtime "/no/such/runtime": not found' <<<"$s" &&
			! grep -qv -e 'bad.conf' -e '^runtime ' <<<"$s"
	}
	journal_warning() {
		local s
		s=$(section warning)
		grep -q '^{"level":"WARN","msg":"config: shared_store .*: missing' <<<"$s" &&
			grep -q 'unknown key "cache_dirr"' <<<"$s" && ! grep -q '"level":"INFO"' <<<"$s"
	}
	journal_info() {
		local s
		s=$(section info)
		grep -q '^{"level":"INFO","msg":"serving",' <<<"$s" && grep -q '^{"level":"INFO","msg":"stopped"' <<<"$s" &&
			! grep -q '"time":' <<<"$s"
	}
	check "journal: -p err shows the bad config's lines, each one, and nothing else" journal_err
	check "journal: -p warning adds the config's warning, a JSON line (log_format = json)" journal_warning
	check "journal: -p info adds the info lines, JSON without a time (journald stamps them)" journal_info
fi

[ "$fail" = 0 ] || { echo "install.sh: FAILED; the daemon's log:" >&2; cat "$work/daemon.log" >&2; [ ! -e "$work/journal.out" ] || cat "$work/journal.out" >&2; exit 1; }
echo "install.sh: make install and the units ok"
