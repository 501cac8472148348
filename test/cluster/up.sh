#!/bin/bash
# up.sh - bring up the test cluster on this one machine: munge, slurmctld, N
# slurmd (each in its own network, UTS and mount namespace: a "node"), each
# node's own podman-hpcd, a plain-HTTP registry on the bridge holding the test
# images, and the plugin in plugstack.conf. Writes build/cluster.env.
#
#   NODES=4 test/cluster/up.sh      (1..32 nodes, default 2)
#   SLURM=24.11 test/cluster/up.sh  (Debian 13's Slurm: slurm2411.sh)
#   INSTALLED=/usr test/cluster/up.sh  (the installed podman-hpc: dpkg -i, or
#                                   make install's DESTDIR/PREFIX, not bin/)
#
# A healthy cluster of the same size, Slurm and proctrack is reused (binaries refreshed, daemons
# restarted); anything else, including leftovers of a crash, is torn down and
# built again. Nothing under /etc is written.
set -euo pipefail
here=$(dirname "$(readlink -f "$0")")
repo=$(readlink -f "$here/../..")
# shellcheck source=test/cluster/lib.sh
. "$here/lib.sh"
NODES=${NODES:-2}
# build/cluster.env exports NODES as the node names: accept that form too.
[[ $NODES =~ ^node ]] && NODES=$(wc -w <<<"$NODES")
CPUS=${CPUS:-4} # advertised per node (SlurmdParameters=config_overrides)
T0=$(date +%s%N)
# The Slurm the cluster runs: the host's, or (SLURM=24.11) slurm2411.sh's,
# which overrides these.
SLURM=${SLURM:-}
INSTALLED=${INSTALLED:-}
SLURM_VERSION_RUN=$(slurmd -V 2>/dev/null | awk '{print $2}')
SLURM_PLUGIN_SRC=$repo/bin/spank_podman_hpc.so
SLURM_OTHER_PLUGIN=$repo/build/slurm-24.11/spank_podman_hpc.so # built for another Slurm
SLURM_ENTER=()
SLURM_BIN=
SLURM_CONF_EXTRA=
# How Slurm tracks a step's processes: linuxproc by default; cgroup (the
# VM's v1 hierarchies) for the tests of where containers' processes go
# (make e2e runs those on a cgroup cluster of its own). linuxproc stays
# the default that CI has run the whole suite with. Under load, srun's
# retry of a step the previous one still holds now and then misses its
# wake-up and waits 120 s, under either (seen once or twice a suite).
PROCTRACK=${PROCTRACK:-linuxproc}
SLURM_TOOLS=(slurmctld slurmd)
SLURM_BATCH_MOUNTS=/usr/bin/srun,/usr/bin/sbatch,/usr/bin/salloc,/usr/bin/scontrol,/usr/bin/squeue,/usr/bin/sinfo,/usr/bin/scancel,/usr/lib/x86_64-linux-gnu/slurm-wlm,/usr/lib/x86_64-linux-gnu/pmix2
write_slurm_wrappers() { :; }

[ "$(id -u)" = 0 ] || { echo "up.sh: must run as root (it creates network namespaces)" >&2; exit 1; }
# Node k is $NET.1k (.11-.19, .110-.132): up to 32 fit in the /24 beside
# the bridge (.1) and the controller (.2). Each node is a slurmd and a
# podman-hpcd (~60 MB together) and tmpfs that holds only what is written.
[[ $NODES =~ ^([1-9]|[12][0-9]|3[0-2])$ ]] || { echo "up.sh: NODES must be 1..32, got '$NODES'" >&2; exit 1; }
case $SLURM in
"" | "$(cut -d. -f1,2 <<<"$SLURM_VERSION_RUN")") SLURM= ;;
24.11)
	[ -z "$INSTALLED" ] || { echo "up.sh: INSTALLED= runs the host's Slurm only (an installed plugin is built for it); drop SLURM=24.11" >&2; exit 1; }
	# shellcheck source=test/cluster/slurm2411.sh
	. "$here/slurm2411.sh"
	SLURM_VERSION_RUN=$(chroot "$SLURM_ROOTFS" slurmd -V | awk '{print $2}')
	;;
*) echo "up.sh: SLURM=$SLURM: the test bed runs the host's Slurm ($SLURM_VERSION_RUN) or 24.11" >&2; exit 1 ;;
esac
[ -z "$SLURM_BIN" ] || export PATH="$SLURM_BIN:$PATH"
for tool in "${SLURM_TOOLS[@]}" munged docker-registry skopeo nsenter unshare; do
	command -v "$tool" >/dev/null || { echo "up.sh: $tool not found; run 'make deps'" >&2; exit 1; }
done
# What runs: bin/ (make build), or an installed tree (INSTALLED=PREFIX, e.g.
# /usr after dpkg -i): its binaries are run, its plugin named, in place.
if [ -n "$INSTALLED" ]; then
	INSTALLED=$(readlink -f "$INSTALLED")
	SLURM_PLUGIN_SRC=$INSTALLED/lib/slurm/spank_podman_hpc.so
	for f in "$INSTALLED/bin/podman-hpcd" "$INSTALLED/bin/podman-hpc-init" "$INSTALLED/bin/podman-hpc-asuser" "$SLURM_PLUGIN_SRC"; do
		[ -e "$f" ] || { echo "up.sh: $f missing; is podman-hpc installed under $INSTALLED (PREFIX)?" >&2; exit 1; }
	done
else
	for f in bin/podman-hpcd bin/podman-hpc-init bin/podman-hpc-asuser "${SLURM_PLUGIN_SRC#"$repo"/}"; do
		[ -e "$repo/$f" ] || { echo "up.sh: $f missing; run 'make build${SLURM:+ SLURM=$SLURM}'" >&2; exit 1; }
	done
fi
# Where slurmstepd and srun load the plugin from.
PLUGIN=$LAB/lib/spank_podman_hpc.so
[ -z "$INSTALLED" ] || PLUGIN=$SLURM_PLUGIN_SRC
id "$TEST_USER" >/dev/null 2>&1 || { echo "up.sh: test user $TEST_USER missing; run 'make deps'" >&2; exit 1; }

# The images first: a cold build takes minutes and needs no cluster.
"$repo/test/images/build.sh" "$repo/build/images"
"$repo/test/images/apt.sh" "$repo/build/images"
"$repo/test/images/rpm.sh" "$repo/build/images"

# install_binaries: copy the build under $LAB, atomically (a plugin replaced
# in place under a running srun or slurmstepd would crash it).
install_binaries() {
	mkdir -p "$LAB/bin" "$LAB/lib"
	ln -sfn "$here/node-exec.sh" "$LAB/bin/node-exec"
	ln -sfn "$here/node-daemon.sh" "$LAB/bin/node-daemon"
	# What slurm.conf's HealthCheckProgram would name: slurmd runs it with
	# SLURMD_NODENAME alone in its environment; the cluster's settings are
	# here (a site sets them in /etc/default/podman-hpc-healthcheck).
	cat >"$LAB/bin/.healthcheck.new" <<-SH
	#!/bin/sh
	export SLURM_CONF=$ETC/slurm.conf PODMAN_HPCD=$LAB/bin/podman-hpcd PODMAN_HPCD_SOCKET=$LAB/nodelocal/podman-hpcd.sock
	export PODMAN_HPC_HEALTHCHECK_CONF=/nonexistent
	# The cluster's Slurm commands (SLURM=24.11: its own scontrol) first.
	${SLURM_BIN:+export PATH=$SLURM_BIN:/usr/sbin:/usr/bin:/sbin:/bin}
	exec $repo/contrib/slurm/podman-hpc-healthcheck.sh "\$@"
	SH
	chmod 0755 "$LAB/bin/.healthcheck.new"
	mv -f "$LAB/bin/.healthcheck.new" "$LAB/bin/healthcheck"
	write_slurm_wrappers
	if [ -n "$INSTALLED" ]; then
		# The installed binary itself (it finds podman-hpc-init and
		# podman-hpc-asuser beside it).
		ln -sfn "$INSTALLED/bin/podman-hpcd" "$LAB/bin/podman-hpcd"
		return
	fi
	install -m 0755 "$repo/bin/podman-hpcd" "$LAB/bin/.podman-hpcd.new"
	mv -f "$LAB/bin/.podman-hpcd.new" "$LAB/bin/podman-hpcd"
	install -m 0755 "$repo/bin/podman-hpc-init" "$LAB/bin/.podman-hpc-init.new"
	mv -f "$LAB/bin/.podman-hpc-init.new" "$LAB/bin/podman-hpc-init"
	install -m 0755 "$repo/bin/podman-hpc-asuser" "$LAB/bin/.podman-hpc-asuser.new"
	mv -f "$LAB/bin/.podman-hpc-asuser.new" "$LAB/bin/podman-hpc-asuser"
	install -m 0644 "$SLURM_PLUGIN_SRC" "$LAB/lib/.spank_podman_hpc.so.new"
	mv -f "$LAB/lib/.spank_podman_hpc.so.new" "$LAB/lib/spank_podman_hpc.so"
}

# write_plugin_configs: what the plugin and the daemons read (at every step
# and start), rewritten on reuse too.
write_plugin_configs() {
	# partitions=debug: the "nocontainers" partition is a pilot's other
	# partitions (containers refused there, jobs run as ever).
	echo "required $PLUGIN socket=$LAB/nodelocal/podman-hpcd.sock podman_hpcd=$LAB/bin/podman-hpcd daemon_config=$ETC/podman-hpcd.conf partitions=debug" >"$ETC/plugstack.conf"
	cat >"$ETC/podman-hpcd.conf" <<-CONF
	# the test cluster's podman-hpcd (every key: contrib/slurm/podman-hpcd.conf)
	# Node-local, on each node's private tmpfs:
	state_dir = $LAB/nodelocal/state
	cache_dir = $LAB/nodelocal/images
	# Writable containers' file systems, on each node's "disk" (a tmpfs of
	# its own beside nodelocal, as a real node's disk is not its /run):
	# small, so that test/e2e/writable_bounds_test.go fills them quickly.
	writable_dir = $LAB/nodelocal/disk/writable
	writable_size = 256M
	writable_max_per_user = 2G
	# Slurm's spool and TmpFS (per node, under $RUN) at the same paths inside:
	# PMIx's server directories and the batch script live there.
	mounts = $RUN:$RUN
	# The host's Slurm client for batch scripts, which run inside: their srun
	# starts steps that inherit the image (its mpi/pmix plugin loads the host PMIx).
	batch_mounts = $LAB/bin/podman-hpcd,$SLURM_BATCH_MOUNTS,$ETC,$LAB/lib
	registries_conf = $ETC/registries.conf
	# A user's path that does not answer (test/e2e/security_paths_test.go's
	# FUSE mount) fails its step after this long.
	user_path_timeout = 5s
	# podman save (podman://) and an export's mksquashfs end after this long
	# (test/e2e/podman_image_test.go's hanging mount_program).
	helper_timeout = 20s
	# Hooks and modules (test/e2e/hooks_test.go): the test's hooks.d only,
	# and the host's Debian MPICH to swap for the image's.
	hooks_dirs = $ETC/hooks.d
	modules = gpu,ib,mpi,pmi
	mpi_libs = /usr/lib/x86_64-linux-gnu/libmpich.so.12*
	mpi_dependency_libs = /usr/lib/x86_64-linux-gnu/libhwloc.so.15
	mpi_env = MPIR_CVAR_ENABLE_GPU=0
	pmi_dirs = $RUN/%n/spool/pmix.%j.%s,$RUN/%n/tmp/spmix_appdir_%u_%j.%s
	CONF
	write_hooks
	cat >"$ETC/registries.conf" <<-CONF
	# the test registry speaks plain HTTP
	[[registry]]
	location = "$REGISTRY_ADDR"
	insecure = true
	# a test's own registry server (test/e2e), when one runs
	[[registry]]
	location = "$TEST_REGISTRY_ADDR"
	insecure = true
	CONF
	chmod 0644 "$ETC/plugstack.conf" "$ETC/podman-hpcd.conf" "$ETC/registries.conf"
}

# write_hooks: the e2e tests' hooks.d. marker (createRuntime, on the host)
# leaves $RUN/hook-markers/CONTAINER-ID; rootfile (createContainer) writes
# into the container's root, which is read-only once it is done.
write_hooks() {
	mkdir -p "$ETC/hooks.d"
	cat >"$ETC/hooks.d/marker.sh" <<-'SH'
	#!/bin/sh
	# The container's state (one line of JSON) is on stdin.
	id=$(sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
	mkdir -p "$1" && echo ran >"$1/$id"
	SH
	cat >"$ETC/hooks.d/rootfile.sh" <<-'SH'
	#!/bin/sh
	# The root is the bundle's rootfs; the bundle is in the state on stdin
	# (the working directory is the runtime's choice).
	bundle=$(sed -n 's/.*"bundle": *"\([^"]*\)".*/\1/p')
	echo written-by-a-hook >"$bundle/rootfs/etc/podman-hpc-hook-file"
	SH
	chmod 0755 "$ETC/hooks.d/marker.sh" "$ETC/hooks.d/rootfile.sh"
	cat >"$ETC/hooks.d/01-marker.json" <<-JSON
	{"version": "1.0.0", "hook": {"path": "$ETC/hooks.d/marker.sh", "args": ["marker.sh", "$RUN/hook-markers"]},
	 "when": {"annotations": {"^org\\\\.podman-hpc\\\\.hook\\\\.marker\$": "^true\$"}}, "stages": ["prestart"]}
	JSON
	cat >"$ETC/hooks.d/02-rootfile.json" <<-JSON
	{"version": "1.0.0", "hook": {"path": "$ETC/hooks.d/rootfile.sh", "timeout": 10},
	 "when": {"annotations": {"^org\\\\.podman-hpc\\\\.hooks\$": "(^|,)rootfile(,|\$)"}}, "stages": ["createContainer"]}
	JSON
	chmod 0644 "$ETC"/hooks.d/*.json
}

healthy() {
	local k
	[ "$(cat "$LAB/nodes" 2>/dev/null)" = "$NODES" ] || return 1
	[ "$(cat "$LAB/slurm-version" 2>/dev/null)" = "$SLURM_VERSION_RUN" ] || return 1
	[ "$(cat "$LAB/proctrack" 2>/dev/null || echo linuxproc)" = "$PROCTRACK" ] || return 1
	alive "$RUN/munge/munged.pid" munged || return 1
	alive "$RUN/ctld/slurmctld.pid" slurmctld || return 1
	alive "$RUN/registry/registry.pid" docker-registry || return 1
	for k in $(seq "$NODES"); do alive "$RUN/node$k/slurmd.pid" slurmd || return 1; done
}

start_daemons_and_images() {
	local k
	for k in $(seq "$NODES"); do "$here/node-daemon.sh" start "node$k"; done
	"$repo/test/images/push.sh" "$REGISTRY_ADDR" "$repo/build/images" >/dev/null
}

write_env() {
	local nodes="" k
	for k in $(seq "$NODES"); do nodes+="${nodes:+ }node$k"; done
	mkdir -p "$repo/build"
	cat >"$LAB/cluster.env" <<-ENV
	# generated by test/cluster/up.sh: source it to use the test cluster
	export LAB=$LAB
	export SLURM_CONF=$ETC/slurm.conf
	export REGISTRY=$REGISTRY_ADDR
	export TEST_REGISTRY=$TEST_REGISTRY_ADDR
	export SMALL_IMAGE=$REGISTRY_ADDR/podman-hpc/small:latest
	export MPI_IMAGE=$REGISTRY_ADDR/podman-hpc/mpi-ring:latest
	export APT_IMAGE=$REGISTRY_ADDR/podman-hpc/apt:latest
	export RPM_IMAGE=$REGISTRY_ADDR/podman-hpc/rpm:latest
	export MPI_RING=/usr/local/bin/ring
	export MPI_RING_MPICH=/usr/local/bin/ring-mpich
	export NODES="$nodes"
	export NODE_EXEC=$LAB/bin/node-exec
	export NODE_DAEMON=$LAB/bin/node-daemon
	export HEALTHCHECK=$LAB/bin/healthcheck
	export NHC_CHECK=$repo/contrib/slurm/nhc/podman_hpc.nhc
	export PODMAN_HPCD=$LAB/bin/podman-hpcd
	export PODMAN_HPCD_SOCKET=$LAB/nodelocal/podman-hpcd.sock
	export TEST_USER=$TEST_USER
	# The Slurm it runs; its commands first in PATH (none: the host's).
	export SLURM_VERSION=$SLURM_VERSION_RUN
	export SLURM_BIN=$SLURM_BIN
	${SLURM_BIN:+export PATH=$SLURM_BIN:\$PATH}
	# A plugin built for another Slurm release (it must refuse to load).
	export OTHER_PLUGIN=$SLURM_OTHER_PLUGIN
	export SHARED_DIR=$LAB/shared
	ENV
	chmod 0644 "$LAB/cluster.env"
	cp "$LAB/cluster.env" "$repo/build/cluster$LAB_ID.env"
}

if healthy; then
	install_binaries
	write_plugin_configs
	for k in $(seq "$NODES"); do "$here/node-daemon.sh" stop "node$k"; done
	start_daemons_and_images
	write_env
	echo "cluster already up ($NODES nodes): binaries refreshed, daemons restarted"
	exit 0
fi
"$here/down.sh" >/dev/null 2>&1 || true

# ------------------------------------------------------------------- files
mkdir -p "$ETC" "$RUN/munge" "$RUN/ctld/state" "$RUN/registry/data" "$LAB/nodelocal" "$LAB/shared"
chmod 0755 "$LAB" "$RUN" "$ETC"
# Outside every node's private mounts: one directory all nodes see, as a
# parallel file system (a site image store: shared_store, off by default).
chmod 0700 "$LAB/shared"
for k in $(seq "$NODES"); do
	mkdir -p "$RUN/node$k/spool" "$RUN/node$k/tmp"
	chmod 1777 "$RUN/node$k/tmp"
done
chown -R slurm:slurm "$RUN/ctld"
chown munge:munge "$RUN/munge"
chown -R docker-registry:docker-registry "$RUN/registry"
echo "$NODES" >"$LAB/nodes"
echo "$SLURM_VERSION_RUN" >"$LAB/slurm-version"
echo "$PROCTRACK" >"$LAB/proctrack"
install_binaries

# A private munge key: the cluster never trusts or is trusted by the host's munge.
dd if=/dev/urandom of="$ETC/munge.key" bs=1024 count=1 status=none
chown munge:munge "$ETC/munge.key"
chmod 0400 "$ETC/munge.key"

nodelist="node[1-$NODES]"
[ "$NODES" = 1 ] && nodelist=node1
{
	cat <<-CONF
	# generated by test/cluster/up.sh
	ClusterName=phpc
	SlurmctldHost=ctl($NET.2)
	SlurmUser=slurm
	SlurmdUser=root
	AuthType=auth/munge
	CredType=cred/munge
	AuthInfo=socket=$RUN/munge/munge.socket.2
	StateSaveLocation=$RUN/ctld/state
	SlurmctldPidFile=$RUN/ctld/slurmctld.pid
	SlurmctldLogFile=$RUN/ctld/slurmctld.log
	SlurmdSpoolDir=$RUN/%n/spool
	SlurmdPidFile=$RUN/%n/slurmd.pid
	SlurmdLogFile=$RUN/%n/slurmd.log
	# Per node: mpi/pmix puts spmix_appdir_<uid>_<job>.<step> here, and the
	# "nodes" share one /tmp (a shared TmpFS fails with EEXIST on the second).
	TmpFS=$RUN/%n/tmp
	MailProg=/bin/true
	# The plugin's job prolog prefetches the job's image on every node at
	# allocation (not at each node's first step). NoHold: srun does not wait
	# for the prolog (Alloc alone made every bare srun 3x slower here).
	PrologFlags=Alloc,NoHold
	# No Epilog: the plugin's job epilog removes a job's containers (the
	# e2e tests prove it); contrib/slurm/epilog.sh is an optional extra.
	SlurmctldDebug=info
	SlurmdDebug=info
	ProctrackType=proctrack/$PROCTRACK
	TaskPlugin=task/none
	JobAcctGatherType=jobacct_gather/none
	AccountingStorageType=accounting_storage/none
	JobCompType=jobcomp/none
	SelectType=select/cons_tres
	SelectTypeParameters=CR_Core
	MpiDefault=none
	ReturnToService=2
	SlurmdParameters=config_overrides
	PlugStackConfig=$ETC/plugstack.conf
	$SLURM_CONF_EXTRA
	InactiveLimit=0
	# Job numbers of their own: cgroups (proctrack/cgroup) are named by
	# node and job, and every cluster's nodes are node1, node2...
	FirstJobId=$(( ${LAB_ID:-0} * 100000 + 1 ))
	KillWait=5
	MinJobAge=300
	SlurmdTimeout=60
	MessageTimeout=10
	CONF
	for k in $(seq "$NODES"); do
		echo "NodeName=node$k NodeAddr=$NET.1$k NodeHostname=node$k CPUs=$CPUS Sockets=1 CoresPerSocket=$CPUS ThreadsPerCore=1 RealMemory=4000 State=UNKNOWN"
	done
	echo "PartitionName=debug Nodes=$nodelist Default=YES MaxTime=INFINITE State=UP"
	echo "PartitionName=nocontainers Nodes=$nodelist Default=NO MaxTime=INFINITE State=UP"
} >"$ETC/slurm.conf"
# proctrack/cgroup on this VM's cgroup v1 hierarchies: Slurm tracks, signals
# and kills a step by its freezer cgroup, which the daemon puts each
# container's init into. Each slurmd's cgroups are under slurm_<node>
# (%n), and each cluster numbers its jobs from its own FirstJobId, so that
# clusters side by side never share a job's cgroup.
cat >"$ETC/cgroup.conf" <<-CONF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
CONF
cat >"$ETC/registry.yml" <<-CONF
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $RUN/registry/data
  delete:
    enabled: true
http:
  addr: $REGISTRY_ADDR
CONF
write_plugin_configs
chmod 0644 "$ETC"/*.conf "$ETC/registry.yml"

# ----------------------------------------------------------------- network
# A bridge in the root namespace (the "login node", where srun runs) and one
# veth per node. No route out: nothing leaves the machine.
ip link add "$BR" type bridge
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
mkns() { # name addr
	ip netns add "$1"
	ip link add "v-$1" type veth peer name eth0 netns "$1"
	ip link set "v-$1" master "$BR" up
	ip -n "$1" addr add "$2/24" dev eth0
	ip -n "$1" link set eth0 up
	ip -n "$1" link set lo up
}
mkns "$NS-ctl" "$NET.2"
# srun and salloc give slurmctld their host's short name for its messages to
# them: the wake of a step waiting for the CPUs of a step still ending, above
# all. Run on the host (the test bed's login node), that name is no node's:
# Slurm 22.05.8 then sends the wake to 0.0.0.0 (a bug fixed in 22.05.9), and a
# resolver to 127.0.0.1; in the controller's namespace both are its own
# loopback, so such a step waited srun's whole retry time (SlurmctldTimeout,
# 120 s) and tests that ran steps from salloc timed out now and then. The
# controller's connections to its loopback, but for its own port, go to the
# host instead.
in_ctl() { nsenter --net="/run/netns/$NS-ctl" "$@"; }
in_ctl sysctl -qw net.ipv4.conf.all.route_localnet=1
in_ctl iptables -t nat -A OUTPUT -p tcp -d 127.0.0.1 ! --dport 6817 -j DNAT --to-destination "$NET.1" # 6817: SlurmctldPort
in_ctl iptables -t nat -A POSTROUTING -s 127.0.0.1 -o eth0 -j MASQUERADE
for k in $(seq "$NODES"); do mkns "$NS-n$k" "$NET.1$k"; done

# ----------------------------------------------------------------- daemons
runuser -u munge -- /usr/sbin/munged \
	--socket="$RUN/munge/munge.socket.2" --key-file="$ETC/munge.key" \
	--pid-file="$RUN/munge/munged.pid" --log-file="$RUN/munge/munged.log" \
	--seed-file="$RUN/munge/munged.seed"
for _ in $(seq 50); do [ -S "$RUN/munge/munge.socket.2" ] && break; sleep 0.1; done

# The registry listens on the bridge address only, as its own user.
setpriv --reuid=docker-registry --regid=docker-registry --init-groups \
	/usr/bin/docker-registry serve "$ETC/registry.yml" </dev/null >"$RUN/registry/registry.log" 2>&1 &
echo $! >"$RUN/registry/registry.pid"

export SLURM_CONF=$ETC/slurm.conf
# nsenter --net, not "ip netns exec" (which remounts /sys); unshare gives the
# UTS namespace (hostname) and a mount namespace whose propagation is slave:
# host mounts are seen, node mounts stay on the node. $LAB/nodelocal is a
# private tmpfs on every node: the same path is each node's local disk, and
# $LAB/nodelocal/disk another (writable containers' writable_dir). Each
# node has its own /dev/shm too, as real nodes do: Open MPI names its shared
# memory files by host name and job, and nodes (or clusters) sharing the
# host's /dev/shm would open each other's.
# SLURM_ENTER: empty for the host's Slurm; slurm-root.sh ROOTFS for 24.11.
nsenter --net="/run/netns/$NS-ctl" unshare --uts --mount --propagation slave \
	sh -c "hostname ctl && exec ${SLURM_ENTER[*]} /usr/sbin/slurmctld -f $ETC/slurm.conf" \
	</dev/null >"$RUN/ctld/stdout" 2>&1
for k in $(seq "$NODES"); do
	nsenter --net="/run/netns/$NS-n$k" unshare --uts --mount --propagation slave \
		sh -c "hostname node$k && mount -t tmpfs -o mode=0755,size=2g nodelocal-node$k $LAB/nodelocal && mkdir $LAB/nodelocal/disk && mount -t tmpfs -o mode=0755,size=4g disk-node$k $LAB/nodelocal/disk && mount -t tmpfs -o mode=1777,nosuid,nodev,size=1g shm-node$k /dev/shm && exec ${SLURM_ENTER[*]} /usr/sbin/slurmd -f $ETC/slurm.conf -N node$k" \
		</dev/null >"$RUN/node$k/stdout" 2>&1
done

for _ in $(seq 100); do (exec 3<>"/dev/tcp/${REGISTRY_ADDR%:*}/${REGISTRY_ADDR#*:}") 2>/dev/null && break; sleep 0.1; done
idle=0
for _ in $(seq 600); do
	idle=$(sinfo -h -N -t idle -o '%N' 2>/dev/null | wc -l || true)
	[ "$idle" -ge "$NODES" ] && break
	sleep 0.1
done
if [ "$idle" -lt "$NODES" ]; then
	echo "up.sh: only $idle of $NODES nodes idle after 60 s; logs in $RUN/*/" >&2
	sinfo -N -l >&2 || true
	exit 1
fi
start_daemons_and_images
write_env
printf 'cluster up: %d nodes of Slurm %s in %d ms; source build/cluster%s.env to use it\n' "$NODES" "$SLURM_VERSION_RUN" $((($(date +%s%N) - T0) / 1000000)) "$LAB_ID"
