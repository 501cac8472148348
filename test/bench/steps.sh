#!/bin/bash
# steps.sh OUT.json: a job's later steps, as a batch script runs them: inside
# one allocation (salloc), STEPS steps `srun -N1 true` and `srun -N2 true`,
# bare and with a cached image, side by side in blocks bare, ours, ours, bare
# (medians, in ms). With reuse (the default reuse_idle) a container step
# after the first joins the container the first one kept; "off" is the same
# with reuse_idle = 0 (the daemons restarted with it, then back): every step
# makes and removes its own, as before reuse. Target: ours within 1.02x of
# bare (issue 26).
set -euo pipefail
repo=$(readlink -f "$(dirname "$0")/../..")
# shellcheck disable=SC1090,SC1091
. "$repo/build/cluster${PHPC_LAB_ID:-}.env"
out=${1:?usage: steps.sh OUT.json}
STEPS=${STEPS:-20}
# By digest, as a job that pinned its image at submission (sbatch or salloc
# --container-image) runs it: a tag that neither pinned costs each srun a
# resolve (podman-hpcd resolve) of its own, on the submitting side.
img=$("$PODMAN_HPCD" resolve --config "$LAB/etc/podman-hpcd.conf" "$SMALL_IMAGE")
conf=$LAB/etc/podman-hpcd.conf

median_ms() { sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", a/b}'; }
row() { printf '  %-52s %10s %s\n' "$1" "$2" "$3"; }

# block N: STEPS steps on N nodes inside one allocation, bare then ours
# then ours then bare; prints "bare_us" and "ours_us" lines (µs). The
# allocation's first container step (it makes the container) is not counted.
block() {
	# shellcheck disable=SC2016 # expanded by the allocation's shell
	salloc -N"$1" --quiet bash -c '
		n=$1 steps=$2 img=$3
		srun -N"$n" --container-image="$img" true >/dev/null 2>&1
		t() { local tag=$1 t0; shift; for _ in $(seq "$steps"); do t0=$(date +%s%N); srun -N"$n" "$@" true >/dev/null 2>&1 || exit 1; echo "$tag $((($(date +%s%N) - t0) / 1000))"; done; }
		t bare; t ours --container-image="$img"; t ours --container-image="$img"; t bare
	' _ "$1" "$STEPS" "$img"
}

# measure N: "bare_ms ours_ms" for N nodes.
measure() {
	local lines
	lines=$(block "$1")
	echo "$(awk '$1 == "bare" {print $2}' <<<"$lines" | median_ms) $(awk '$1 == "ours" {print $2}' <<<"$lines" | median_ms)"
}

restart_daemons() {
	for n in $NODES; do "$NODE_DAEMON" stop "$n" && "$NODE_DAEMON" start "$n"; done
}

# Reuse needs Slurm's cgroup tracking (a kept container's init goes into
# the job's cgroups; without them every step makes its own): on a cluster
# without it, this part brings it up with proctrack/cgroup, and back after.
proctrack=$(awk -F= '$1 == "ProctrackType" {print $2}' "$SLURM_CONF")
restore_cluster() { :; }
if [ "$proctrack" != proctrack/cgroup ]; then
	PROCTRACK=cgroup NODES=$(wc -w <<<"$NODES") "$repo/test/cluster/up.sh" >&2
	restore_cluster() { PROCTRACK="${proctrack#proctrack/}" NODES=$(wc -w <<<"$NODES") "$repo/test/cluster/up.sh" >&2 || true; }
	trap restore_cluster EXIT
fi

srun -N2 --container-image="$SMALL_IMAGE" true >/dev/null # the image cached on both nodes

read -r bare1 ours1 <<<"$(measure 1)"
read -r bare2 ours2 <<<"$(measure 2)"

# Before reuse: reuse_idle = 0, the daemons restarted with it, then back.
cp "$conf" "$conf.bench"
trap 'mv -f "$conf.bench" "$conf"; restart_daemons; restore_cluster' EXIT
{ grep -v '^reuse_idle' "$conf.bench" || true; echo "reuse_idle = 0"; } >"$conf"
restart_daemons
read -r offbare1 off1 <<<"$(measure 1)"
read -r offbare2 off2 <<<"$(measure 2)"

row "later steps in one allocation: srun -N1 true, bare" "$bare1" ms
row "  srun -N1 --container-image true, reused" "$ours1" ms
row "  ratio (target <= 1.02)" "$(ratio "$ours1" "$bare1")" ""
row "  srun -N1 --container-image true, reuse off; bare" "$off1 $offbare1" ms
row "  ratio, reuse off" "$(ratio "$off1" "$offbare1")" ""
row "later steps in one allocation: srun -N2 true, bare" "$bare2" ms
row "  srun -N2 --container-image true, reused" "$ours2" ms
row "  ratio (target <= 1.02)" "$(ratio "$ours2" "$bare2")" ""
row "  srun -N2 --container-image true, reuse off; bare" "$off2 $offbare2" ms
row "  ratio, reuse off" "$(ratio "$off2" "$offbare2")" ""

cat >"$out" <<JSON
  "later_steps": {"steps": $STEPS, "target_ratio": 1.02,
    "n1": {"bare_ms": $bare1, "ours_ms": $ours1, "ratio": $(ratio "$ours1" "$bare1"), "off_bare_ms": $offbare1, "off_ms": $off1, "off_ratio": $(ratio "$off1" "$offbare1")},
    "n2": {"bare_ms": $bare2, "ours_ms": $ours2, "ratio": $(ratio "$ours2" "$bare2"), "off_bare_ms": $offbare2, "off_ms": $off2, "off_ratio": $(ratio "$off2" "$offbare2")}}
JSON
