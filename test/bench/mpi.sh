#!/bin/bash
# mpi.sh OUT - the MPI benchmarks, on the running test cluster (bench.sh runs
# it). Side by side in one run, interleaved, medians:
#   the ring, 2 nodes x 4 ranks, srun --mpi=pmix: bare metal (the ring built
#   on the host), ours (--container-image, image cached), and one podman
#   container per rank, the seeds' way (srun starts "podman run ... ring" as
#   each rank; the image already in podman's store): step wall time and the
#   slowest rank's MPI_Init;
#   pingpong between two ranks on one node and on two nodes, bare metal and
#   ours: latency and bandwidth.
# All steps run in one allocation, each once the one before has left its
# nodes, so that no step waits for another's nodes in its time.
# Prints a table and writes OUT, the "mpi_ring" and "mpi_pingpong" members of
# build/bench.json (bench.sh puts them in).
set -euo pipefail
repo=$(readlink -f "$(dirname "$0")/../..")
# shellcheck disable=SC1090,SC1091
. "$repo/build/cluster${PHPC_LAB_ID:-}.env"
out=${1:?usage: mpi.sh OUT}
RUNS=${MPI_RUNS:-7}
read -r n1 n2 _ <<<"$NODES"
[ -n "$n2" ] || { echo "mpi.sh: needs 2 nodes, the cluster has $NODES" >&2; exit 1; }
for tool in mpicc.openmpi podman; do
	command -v "$tool" >/dev/null || { echo "mpi.sh: $tool not found; run 'make deps'" >&2; exit 1; }
done

row() { printf '  %-52s %10s %s\n' "$1" "$2" "$3"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }
median() { sort -n | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "null"}'; }

# The same sources as the image's programs, built on the host (Debian 12 too).
mkdir -p "$repo/build"
mpicc.openmpi -O2 -Wall -o "$repo/build/ring" "$repo/test/images/ring.c"
mpicc.openmpi -O2 -Wall -o "$repo/build/pingpong" "$repo/test/images/pingpong.c"

# Podman, private to this run: its configuration here, its store on each
# node's local disk ($LAB/nodelocal is a tmpfs of each node's own), file
# locks (not a /dev/shm/libpod_lock shared with other users of podman).
# Everything goes on exit. The store's path is kept short: with a graphroot
# longer than about 47 characters, podman 4.3.1 here waits its 20 s conmon
# timeout after every container exits (the symptom of podman#19915).
store=$LAB/nodelocal/pm
[ ${#store} -le 40 ] || { echo "mpi.sh: podman store path $store too long (see above)" >&2; exit 1; }
if "$NODE_EXEC" "$n1" test -e "$store"; then
	echo "mpi.sh: $store exists on $n1: another mpi.sh running on this cluster?" >&2
	exit 1
fi
work=$(mktemp -d "/var/tmp/phpc-bench${PHPC_LAB_ID:-}.XXXXXX")
job=""
ompi=$LAB/nodelocal/pm-ompi
cleanup() {
	local n
	[ -z "$job" ] || scancel "$job" 2>/dev/null || true
	for n in "$n1" "$n2"; do
		"$NODE_EXEC" "$n" sh -c "grep -o ' ${store}[^ ]*' /proc/self/mounts | sort -r | xargs -r -n1 umount -l; rm -rf $store $ompi" || true
	done
	# podman's cgroupfs manager leaves empty libpod_parent cgroups; an
	# rmdir of one still in use fails, harmlessly.
	find /sys/fs/cgroup -depth -type d -path '*/libpod_parent*' -exec rmdir {} + 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
cat >"$work/containers.conf" <<EOF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$store/events.log"
lock_type = "file"
tmp_dir = "$store/tmp"
static_dir = "$store/root/libpod"
volume_path = "$store/volumes"
[network]
network_config_dir = "$store/networks"
EOF
cat >"$work/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$store/root"
runroot = "$store/runroot"
EOF
podman=(env CONTAINERS_CONF="$work/containers.conf" CONTAINERS_STORAGE_CONF="$work/storage.conf" podman)
img=""
for n in "$n1" "$n2"; do
	img=$("$NODE_EXEC" "$n" "${podman[@]}" pull -q "oci:$repo/build/images/mpi:latest")
done

# The seeds' command line, as root (keep-id is for rootless podman), with
# runc and the rlimits root can set here; Slurm's spool and TmpFS bound in,
# where the PMIx server's directories are (what the site's mounts give our
# daemon), and, as the seeds do, a directory for Open MPI's session files
# shared by the ranks' containers of a node (each has its own /tmp; ranks on
# a node find each other's shared-memory files there). The directory is the
# node's own ($LAB/nodelocal), as on real nodes: a host directory would be
# one for every test node, which real nodes never share.
ompi=$LAB/nodelocal/pm-ompi
for n in "$n1" "$n2"; do "$NODE_EXEC" "$n" sh -c "rm -rf $ompi && mkdir -m 0700 $ompi"; done
per_rank=("${podman[@]}" run --runtime runc --env-host --net=host --pid=host --ipc=host
	--ulimit nofile=1024:1024 --ulimit nproc=4096:4096
	-v "$LAB/run:$LAB/run" -v "$ompi:$ompi" -e OMPI_MCA_orte_tmpdir_base="$ompi" "$img")

job=$(salloc --no-shell -N2 --ntasks-per-node=4 -w "$n1,$n2" -J phpc-bench-mpi 2>&1 |
	sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p')
[ -n "$job" ] || { echo "mpi.sh: no allocation on $n1,$n2" >&2; exit 1; }
step=(srun --jobid="$job" --mpi=pmix -N2 --ntasks-per-node=4)

# idle: wait (untimed) until the job has no step left: a step created while
# the last one still holds its CPUs waits, with back-off, up to minutes.
idle() {
	for _ in $(seq 600); do
		[ -z "$(squeue -h -s -j "$job" 2>/dev/null)" ] && return 0
		sleep 0.05
	done
	echo "mpi.sh: steps of job $job still running after 30 s" >&2
	return 1
}

# ring LABEL CMD...: one timed run; appends "WALL_MS INIT_MS" (the slowest
# rank's MPI_Init) to $work/LABEL.
ring() {
	local label=$1 t0 t1 f=$work/$1.out
	shift
	idle
	t0=$(date +%s%N)
	RING_TIMING=1 "$@" >"$f" 2>&1 || { echo "mpi.sh: $label: '$*' failed:" >&2; tail -20 "$f" >&2; return 1; }
	t1=$(date +%s%N)
	grep -q '^ring: rank 0 got the message back' "$f" || { echo "mpi.sh: $label: no ring:" >&2; cat "$f" >&2; return 1; }
	printf '%s %s\n' "$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.1f", d/1e6}')" \
		"$(awk '/^ring: rank [0-9]+ MPI_Init took/ {if ($6 > m) m = $6} END {print m}' "$f")" >>"$work/$label"
}

# rm_exited: the seeds' podman run has no --rm; their exited containers go
# between runs, untimed.
rm_exited() {
	local n
	for n in "$n1" "$n2"; do "$NODE_EXEC" "$n" "${podman[@]}" rm -a >/dev/null; done
}

echo "MPI: ring on $n1,$n2 x 4 ranks, pingpong ($RUNS runs each, interleaved, medians)"
# 8 ranks on this machine's 2 cores: a rank waiting for a message yields the
# CPU, or each hop of the ring waits for a spinning neighbour's time slice.
export OMPI_MCA_mpi_yield_when_idle=1
# Warm-up, untimed: the image into our cache, every binary into page cache.
ring warm "${step[@]}" "$repo/build/ring"
ring warm "${step[@]}" --container-image="$MPI_IMAGE" "$MPI_RING"
# The per-rank podman baseline is someone else's way, measured for
# comparison: when it cannot run here (podman's own failure), the benchmark
# says so and goes on without it; ours and bare metal must always run.
podman_failed="" podman_log=$repo/build/bench-mpi-podman.log
podman_ring() {
	[ -z "$podman_failed" ] || return 0
	if ! ring podman "${step[@]}" "${per_rank[@]}" "$MPI_RING" 2>>"$podman_log"; then
		podman_failed=1
		cat "$work/podman.out" >>"$podman_log" 2>/dev/null || true
		tail -5 "$podman_log" >&2
		echo "mpi.sh: the per-rank podman baseline failed (log: $podman_log); going on without it" >&2
	fi
	rm_exited || true
}
: >"$podman_log"
podman_ring
for _ in $(seq "$RUNS"); do
	ring bare "${step[@]}" "$repo/build/ring"
	ring ours "${step[@]}" --container-image="$MPI_IMAGE" "$MPI_RING"
	podman_ring
done
col() { [ -f "$work/$2" ] || { echo null; return; }; awk -v c="$1" '{print $c}' "$work/$2" | median; }
bare=$(col 1 bare) ours=$(col 1 ours) pod=$(col 1 podman)
bare_init=$(col 2 bare) ours_init=$(col 2 ours) pod_init=$(col 2 podman)
row "ring step, bare metal" "$bare" ms
row "ring step, --container-image (cached)" "$ours" ms
if [ -n "$podman_failed" ]; then
	row "ring step, podman run per rank" "could not run" "(baseline; see $podman_log)"
	pod=null pod_init=null pod_ratio=null
else
	pod_ratio=$(ratio "$ours" "$pod")
	row "ring step, podman run per rank (image in store)" "$pod" ms
fi
row "  ours / bare (target <= 1.10)" "$(ratio "$ours" "$bare")" ""
row "  ours / podman per rank (target < 1)" "$pod_ratio" ""
row "MPI_Init, slowest rank: bare / ours / podman" "$bare_init / $ours_init / $pod_init" ms

# pingpong LABEL CMD...: one run; appends "LATENCY_US BANDWIDTH_MBS".
pingpong() {
	local label=$1 f=$work/$1.out
	shift
	idle
	"$@" >"$f" 2>&1 || { echo "mpi.sh: $label: '$*' failed:" >&2; tail -20 "$f" >&2; return 1; }
	awk '$2 == "latency_us" {l=$3} $2 == "bandwidth_mbs" {b=$3} END {if (l == "" || b == "") exit 1; print l, b}' "$f" >>"$work/$label" ||
		{ echo "mpi.sh: $label: no figures:" >&2; cat "$f" >&2; return 1; }
}
# Latency is measured the usual way: ranks spin while they wait.
unset OMPI_MCA_mpi_yield_when_idle
intra=(srun --jobid="$job" --mpi=pmix -N1 -n2 -w "$n1")
inter=(srun --jobid="$job" --mpi=pmix -N2 --ntasks-per-node=1)
for _ in $(seq "$RUNS"); do
	pingpong intra_bare "${intra[@]}" "$repo/build/pingpong"
	pingpong intra_ours "${intra[@]}" --container-image="$MPI_IMAGE" /usr/local/bin/pingpong
	pingpong inter_bare "${inter[@]}" "$repo/build/pingpong"
	pingpong inter_ours "${inter[@]}" --container-image="$MPI_IMAGE" /usr/local/bin/pingpong
done
declare -A lat bw
for v in intra_bare intra_ours inter_bare inter_ours; do
	lat[$v]=$(col 1 "$v")
	bw[$v]=$(col 2 "$v")
done
row "pingpong latency, one node: bare / ours" "${lat[intra_bare]} / ${lat[intra_ours]}" us
row "pingpong latency, two nodes: bare / ours" "${lat[inter_bare]} / ${lat[inter_ours]}" us
row "pingpong 1 MiB bandwidth, one node: bare / ours" "${bw[intra_bare]} / ${bw[intra_ours]}" MB/s
row "pingpong 1 MiB bandwidth, two nodes: bare / ours" "${bw[inter_bare]} / ${bw[inter_ours]}" MB/s

cat >"$out" <<JSON
  "mpi_ring": {"bare_ms": $bare, "ours_ms": $ours, "per_rank_podman_ms": $pod, "ratio": $(ratio "$ours" "$bare"), "ours_per_rank_podman_ratio": $pod_ratio, "bare_init_ms": $bare_init, "ours_init_ms": $ours_init, "per_rank_podman_init_ms": $pod_init},
  "mpi_pingpong": {"intra_bare_us": ${lat[intra_bare]}, "intra_ours_us": ${lat[intra_ours]}, "inter_bare_us": ${lat[inter_bare]}, "inter_ours_us": ${lat[inter_ours]}, "bw_bare_mbs": ${bw[inter_bare]}, "bw_ours_mbs": ${bw[inter_ours]}, "intra_bw_bare_mbs": ${bw[intra_bare]}, "intra_bw_ours_mbs": ${bw[intra_ours]}}
JSON
