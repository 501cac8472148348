#!/bin/bash
# bench.sh - benchmarks on the running test cluster. Prints a table and writes
# build/bench.json. Each entry is measured side by side with its baseline in
# the same run; figures are medians.
set -euo pipefail
repo=$(readlink -f "$(dirname "$0")/..")
# shellcheck disable=SC1091
. "$repo/build/cluster.env"
RUNS=${RUNS:-11}

# median_ms CMD...: the median wall time of RUNS runs of CMD, in ms.
median_ms() {
	local t0 times=()
	for _ in $(seq "$RUNS"); do
		t0=$(date +%s%N)
		"$@" >/dev/null 2>&1 || { echo "bench.sh: '$*' failed" >&2; return 1; }
		times+=($((($(date +%s%N) - t0) / 1000)))
	done
	printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "%.1f", a[int((NR+1)/2)]/1000}'
}

echo "benchmarks on $NODES ($RUNS runs each, medians)"
bare_step=$(median_ms srun -N2 -n8 true)
printf '  %-40s %10s ms\n' "srun -N2 -n8 true (bare)" "$bare_step"
single=$(median_ms srun -N1 -n1 true)
printf '  %-40s %10s ms\n' "srun -N1 -n1 true (bare)" "$single"

mkdir -p "$repo/build"
cat >"$repo/build/bench.json" <<JSON
{
  "bare_step": {"n2_n8_ms": $bare_step, "n1_n1_ms": $single}
}
JSON
echo "wrote build/bench.json"
