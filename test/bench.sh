#!/bin/bash
# bench.sh - benchmarks on the running test cluster (make bench). Each figure
# is measured side by side with its baseline in the same run, as medians.
# Prints a table and writes build/bench.json; the MPI figures come from
# test/bench/mpi.sh, the scale figures (and build/scale.png) from
# test/bench/scale.sh.
set -euo pipefail
repo=$(readlink -f "$(dirname "$0")/..")
# shellcheck disable=SC1090,SC1091
. "$repo/build/cluster${PHPC_LAB_ID:-}.env"
RUNS=${RUNS:-11}
node=${NODES%% *}

# times_us CMD...: the wall times of RUNS runs of CMD, in µs, a line each.
times_us() {
	local t0
	for _ in $(seq "$RUNS"); do
		t0=$(date +%s%N)
		"$@" >/dev/null 2>&1 || { echo "bench.sh: '$*' failed" >&2; return 1; }
		echo $((($(date +%s%N) - t0) / 1000))
	done
}

# median_ms: the median of the µs values on stdin, in ms.
median_ms() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'; }

# ready_ms MARK: the median "container ready" duration, in ms, that the
# daemons logged after MARK (log_mark's output): by position in each log,
# not by job id, which tests' fake ids in the same logs would outrank.
ready_ms() {
	local n skip
	for n in $NODES; do
		skip=$(awk -v n="$n" '$1 == n {print $2}' <<<"$1")
		tail -n +"$((${skip:-0} + 1))" "$LAB/run/$n/podman-hpcd.log"
	done | grep 'msg="container ready"' |
		sed -E 's/.* duration=([0-9.]+)(µs|ms|s)$/\1 \2/' |
		awk '{v=$1; if ($2=="µs") v/=1000; if ($2=="s") v*=1000; print v}' | sort -n |
		awk '{a[NR]=$1} END {if (NR) printf "%.1f", a[int((NR+1)/2)]; else print "null"}'
}

# log_mark: each node's daemon log length, "NODE LINES" a line.
log_mark() {
	local n
	for n in $NODES; do
		echo "$n $(wc -l <"$LAB/run/$n/podman-hpcd.log")"
	done
}

# daemons_cpu_ms: the CPU time, in ms, the nodes' daemons ("self") and the
# children they waited for (the runtime, the user helper, hooks) have used
# so far: "SELF CHILDREN".
daemons_cpu_ms() {
	local hz n pid self=0 children=0
	hz=$(getconf CLK_TCK)
	for n in $NODES; do
		pid=$(cat "$LAB/run/$n/podman-hpcd.pid")
		# utime stime cutime cstime: fields 14-17, after the comm's ')'.
		read -r s c < <(sed 's/.*) //' "/proc/$pid/stat" | awk '{print $12 + $13, $14 + $15}')
		self=$((self + s)) children=$((children + c))
	done
	echo $((self * 1000 / hz)) $((children * 1000 / hz))
}

# machine_cpu_ms: the CPU time, in ms, the whole machine has used so far
# (every process: slurmd, slurmstepd, srun, the daemons).
machine_cpu_ms() {
	awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" {printf "%d\n", ($2 + $3 + $4 + $7 + $8) * 1000 / hz}' /proc/stat
}

row() { printf '  %-52s %10s %s\n' "$1" "$2" "$3"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }

echo "benchmarks on $NODES ($RUNS runs each, medians; the step side by side in blocks bare, ours, ours, bare)"

# Pull and squash, cold, side by side with skopeo + umoci + mksquashfs and
# with the physical limit (every layer decompressed in parallel), on a
# multi-layer image of ~1.4 GB unpacked with whiteouts (built once, cached).
big=$repo/build/images/big
[ -f "$big/index.json" ] || "$repo/test/bench/pull/bigimage.sh" "$big" "$repo/build/images/mpi"
(cd "$repo" && go run -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" \
	./test/bench/pull -image "oci:$big:latest" -runs "${PULL_RUNS:-3}" -work "/var/tmp/podman-hpc-bench${PHPC_LAB_ID:-}/run" -json "$repo/build/bench-pull.json") >&2
pull() { awk -v k="\"$1\":" '/"median": \{/ {m=1} m && $1 == k {gsub(/,/, "", $2); printf "%.3f\n", $2; f=1; exit} END {if (!f) print "null"}' "$repo/build/bench-pull.json"; }
decompressor=$(awk -F'"' '$2 == "decompressor" {print $4; exit}' "$repo/build/bench-pull.json")
squasher=$(awk -F'"' '$2 == "squasher" {print $4; exit}' "$repo/build/bench-pull.json")
image_bytes=$(du -sb "$big/blobs" | cut -f1)
row "pull + squash, ours (cold; $squasher)" "$(pull ours_s)" s
row "  download (the last layer's arrival, beside the applies)" "$(pull ours_download_s)" s
row "  download + apply (decompress + $([ "$squasher" = tar2sqfs ] && echo "stream into tar2sqfs" || echo extract))" "$(pull ours_apply_s)" s
row "    apply waiting on decompression ($decompressor)" "$(pull ours_decompress_wait_s)" s
row "    apply waiting on $([ "$squasher" = tar2sqfs ] && echo tar2sqfs || echo extraction)" "$(pull ours_extract_wait_s)" s
row "  $squasher after the last layer" "$(pull ours_squash_s)" s
row "pull + squash, ours extracting (no tar2sqfs)" "$(pull ours_extracting_s)" s
row "skopeo copy + umoci unpack + mksquashfs" "$(pull baseline_s)" s
row "  skopeo copy / umoci unpack / mksquashfs" "$(pull skopeo_s) / $(pull umoci_s) / $(pull mksquashfs_s)" s
row "  ratio (target <= 0.40)" "$(pull ours_vs_baseline)" ""
row "decompress every layer in parallel, zcat (the limit)" "$(pull zcat_parallel_s)" s
row "  ratio to the limit (target <= 1.4)" "$(pull ours_vs_limit)" ""
row "decompress every layer in parallel, igzip" "$(pull igzip_parallel_s)" s
row "pull + squash, ours without igzip (Go's gzip)" "$(pull ours_no_igzip_s)" s
row "CPU time of the pull: ours / baseline" "$(pull ours_cpu_s) / $(pull baseline_cpu_s)" s
row "reuse of a cached image (target < 50)" "$(pull reuse_ms)" ms
row "peak RSS of the daemon's pull" "$(pull go_rss_mb)" MB
row "bytes written per byte of squashfs" "$(pull written_per_squashfs_byte)" ""

img=$SMALL_IMAGE
srun -N2 --container-image="$img" true >/dev/null # warm the cache on both nodes

before=$(log_mark)
# In blocks bare, ours, ours, bare, so that a drift of the machine during
# the runs weighs on both alike; after the pull benchmark's gigabytes have
# been written back, which otherwise goes on during the first block.
sync
m0=$(machine_cpu_ms)
bare1=$(times_us srun -N2 -n8 true)
m1=$(machine_cpu_ms)
d1=$(daemons_cpu_ms)
ours1=$(times_us srun -N2 -n8 --container-image="$img" true)
ours2=$(times_us srun -N2 -n8 --container-image="$img" true)
d2=$(daemons_cpu_ms)
m2=$(machine_cpu_ms)
bare2=$(times_us srun -N2 -n8 true)
m3=$(machine_cpu_ms)
# CPU per node and step: each step starts one container on each of its 2
# nodes. Bare: the whole machine's CPU for a bare step, per node (Slurm's
# own cost, srun's included); ours: the daemon's and its children's only,
# and the machine's for a container step, per node.
starts=$((RUNS * 2 * 2))
read -r d1_self d1_children <<<"$d1"
read -r d2_self d2_children <<<"$d2"
cpu_self=$(awk -v d=$((d2_self - d1_self)) -v n="$starts" 'BEGIN {printf "%.1f", d / n}')
cpu_children=$(awk -v d=$((d2_children - d1_children)) -v n="$starts" 'BEGIN {printf "%.1f", d / n}')
cpu_start=$(awk -v a="$cpu_self" -v b="$cpu_children" 'BEGIN {printf "%.1f", a + b}')
cpu_bare=$(awk -v m=$((m1 - m0 + m3 - m2)) -v n="$starts" 'BEGIN {printf "%.1f", m / n}')
cpu_ours=$(awk -v m=$((m2 - m1)) -v n="$starts" 'BEGIN {printf "%.1f", m / n}')
bare=$(printf '%s\n%s\n' "$bare1" "$bare2" | median_ms)
ours=$(printf '%s\n%s\n' "$ours1" "$ours2" | median_ms)

row "srun -N2 -n8 true, bare" "$bare" ms
row "srun -N2 -n8 --container-image true (cached)" "$ours" ms
row "  ratio (target <= 1.10)" "$(ratio "$ours" "$bare")" ""

# The daemons' own measure, request to container ready, for the steps above.
ready=$(ready_ms "$before")
row "request to container ready, per node (target <= 5)" "$ready" ms
row "CPU per container start: daemon + what it waits for" "$cpu_start" ms
row "  the daemon's own" "$cpu_self" ms
row "  programs it waits for (runtime, helper, hooks)" "$cpu_children" ms
row "CPU per node and step, whole machine: container step" "$cpu_ours" ms
row "CPU per node and step, whole machine: bare step" "$cpu_bare" ms

# Joining: a step parks a container; join.c measures setns+exec against
# fork+exec on that node, alone and 64 at once.
mkdir -p "$repo/build"
gcc -O2 -Wall -Wextra -Werror -o "$repo/build/join-bench" "$repo/test/bench/join.c"
srun -N1 -w "$node" --container-image="$img" sleep 60 >/dev/null 2>&1 &
step=$!
pid=""
for _ in $(seq 100); do
	pid=$("$NODE_EXEC" "$node" pgrep -f '^/[.]podman-hpc/init' | head -1 || true)
	[ -n "$pid" ] && break
	sleep 0.1
done
[ -n "$pid" ] || { echo "bench.sh: no container came up for the join benchmark" >&2; exit 1; }
join=$("$NODE_EXEC" "$node" "$repo/build/join-bench" "/proc/$pid/ns/mnt" 64 15)
# The runtime's own cost, the floor under the CPU per container start: the
# parked container's spec, run and removed by the runtime as the daemon
# does it (test/bench/runtime), on the same node.
state=$(awk -F' *= *' '$1 == "state_dir" {print $2}' "$LAB/etc/podman-hpcd.conf")
runtime=$(grep -ho 'msg="containers ready" runtime=[^ ]*' "$LAB/run/$node/podman-hpcd.log" | tail -1 | cut -d= -f3)
spec=$("$NODE_EXEC" "$node" sh -c "ls -t '$state'/containers/*/config.json | head -1")
(cd "$repo" && CGO_ENABLED=0 go build -tags "containers_image_openpgp exclude_graphdriver_btrfs exclude_graphdriver_devicemapper" -o build/runtime-bench ./test/bench/runtime)
floor=$("$NODE_EXEC" "$node" "$repo/build/runtime-bench" -spec "$spec" -runtime "${runtime:-/usr/bin/crun}" -n 40)
scancel --quiet "$(squeue -h -o %i -n sleep | head -1)" 2>/dev/null || true
kill "$step" 2>/dev/null || true
wait "$step" 2>/dev/null || true
get() { awk -v k="$1" '$1 == k {print $2}' <<<"$join"; }
floor_ms=$(awk '$1 == "runtime_cpu_ms" {print $2}' <<<"$floor")
inside_ms=$(awk '$1 == "runtime_container_cpu_ms" {print $2}' <<<"$floor")
run_ms=$(awk '$1 == "runtime_run_ms" {print $2}' <<<"$floor")
# The runtime's work inside the container (its first process, before that
# exec's the init) is no child anyone waits for: not in the figure above.
cpu_all=$(awk -v a="$cpu_start" -v b="$inside_ms" 'BEGIN {printf "%.1f", a + b}')
row "the runtime alone, per container start (the floor)" "$floor_ms" ms
row "  and inside the container, before the init (not waited for)" "$inside_ms" ms
row "CPU per container start, every process (target <= 5)" "$cpu_all" ms
row "the runtime alone, run to running (the floor under ready)" "$run_ms" ms
row "one task: setns + exec (target < 1)" "$(get join_one_ms)" ms
row "one task: plain fork + exec" "$(get plain_one_ms)" ms
row "64 tasks at once: setns + exec" "$(get join_burst_ms)" ms
row "64 tasks at once: plain fork + exec" "$(get plain_burst_ms)" ms
row "  ratio (target <= 1.5)" "$(ratio "$(get join_burst_ms)" "$(get plain_burst_ms)")" ""

# A job's later steps inside one allocation: reused, and reuse off.
echo
"$repo/test/bench/steps.sh" "$repo/build/bench-steps.json"

# MPI: the ring three ways (bare, ours, podman per rank), pingpong.
echo
"$repo/test/bench/mpi.sh" "$repo/build/bench-mpi.json"

# Scale: 1 to 32 nodes, cold and warm, with the site image store and
# without; the cluster is brought up at 32 nodes for it and back after.
echo
"$repo/test/bench/scale.sh" "$repo/build/bench-scale.json"

cat >"$repo/build/bench.json" <<JSON
{
  "pull_squash": {"ours_s": $(pull ours_s), "baseline_s": $(pull baseline_s), "ratio": $(pull ours_vs_baseline), "target_ratio": 0.40, "limit_s": $(pull zcat_parallel_s), "limit_ratio": $(pull ours_vs_limit), "target_limit_ratio": 1.4, "image_bytes": $image_bytes, "peak_rss_mb": $(pull go_rss_mb), "written_per_squashfs_byte": $(pull written_per_squashfs_byte),
    "ours_breakdown": {"download_s": $(pull ours_download_s), "download_and_apply_s": $(pull ours_apply_s), "apply_waiting_on_decompression_s": $(pull ours_decompress_wait_s), "apply_waiting_on_squasher_s": $(pull ours_extract_wait_s), "squash_after_last_layer_s": $(pull ours_squash_s), "decompressor": "$decompressor", "squasher": "$squasher"},
    "ours_extracting": {"s": $(pull ours_extracting_s), "apply_s": $(pull ours_extracting_apply_s), "mksquashfs_s": $(pull ours_extracting_squash_s), "cpu_s": $(pull ours_extracting_cpu_s), "written_per_squashfs_byte": $(pull ours_extracting_written_per_squashfs_byte)},
    "baseline_breakdown": {"skopeo_s": $(pull skopeo_s), "umoci_s": $(pull umoci_s), "mksquashfs_s": $(pull mksquashfs_s)},
    "cpu": {"ours_s": $(pull ours_cpu_s), "baseline_s": $(pull baseline_cpu_s), "ratio": $(pull ours_vs_baseline_cpu), "ours_without_igzip_s": $(pull ours_no_igzip_cpu_s)},
    "ours_without_igzip_s": $(pull ours_no_igzip_s),
    "limits": {"zcat_parallel_s": $(pull zcat_parallel_s), "zcat_serial_s": $(pull zcat_serial_s), "igzip_parallel_s": $(pull igzip_parallel_s), "igzip_serial_s": $(pull igzip_serial_s), "ours_vs_igzip_parallel": $(pull ours_vs_igzip_limit)}},
  "cached_reuse": {"ms": $(pull reuse_ms)},
  "step_overhead": {"ours_ms": $ours, "bare_ms": $bare, "ratio": $(ratio "$ours" "$bare")},
  "container_ready": {"ms": $ready, "target_ms": 5, "runtime_alone_ms": $run_ms},
  "container_start_cpu": {"all_processes_ms": $cpu_all, "daemon_and_runtime_ms": $cpu_start, "target_ms": 5, "runtime_inside_container_ms": $inside_ms, "daemon_ms": $cpu_self, "waited_children_ms": $cpu_children, "runtime_alone_ms": $floor_ms, "machine_per_node_step_ms": $cpu_ours, "bare_machine_per_node_step_ms": $cpu_bare},
  "join": {"ms": $(get join_one_ms), "plain_ms": $(get plain_one_ms), "burst64_ms": $(get join_burst_ms), "plain_burst64_ms": $(get plain_burst_ms)},
$(cat "$repo/build/bench-steps.json"),
$(cat "$repo/build/bench-mpi.json"),
$(cat "$repo/build/bench-scale.json")
}
JSON
echo "wrote build/bench.json"
