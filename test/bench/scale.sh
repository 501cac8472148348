#!/bin/bash
# scale.sh OUT.json - make bench's scale entry: for N nodes (SCALE_NODES, by
# default 1 2 4 8 16 32), a cold step (the image on no node, a fresh digest
# each time), a warm step and bare srun; the registry's blob fetches per job
# (from its own log), with the site image store (shared_store) and without.
# Brings the test cluster up at the largest N for it, and back to the size it
# found. Writes OUT.json (a "scale" entry), build/scale.dat, build/scale.png.
set -euo pipefail
repo=$(readlink -f "$(dirname "$0")/../..")
out=$1
id=${PHPC_LAB_ID:-}
# shellcheck disable=SC1090
. "$repo/build/cluster$id.env"
sizes=${SCALE_NODES:-1 2 4 8 16 32}
max=$(tr ' ' '\n' <<<"$sizes" | sort -n | tail -1)
found=$(wc -w <<<"$NODES")
RUNS=${SCALE_RUNS:-3}

NODES=$max "$repo/test/cluster/up.sh" >&2
# shellcheck disable=SC1090
. "$repo/build/cluster$id.env"
conf=$LAB/etc/podman-hpcd.conf
cp "$conf" "$conf.scale-orig"
restore() {
	mv -f "$conf.scale-orig" "$conf"
	NODES=$found "$repo/test/cluster/up.sh" >&2 || true
}
trap restore EXIT

restart_daemons() {
	local n
	for n in $NODES; do "$NODE_DAEMON" stop "$n"; done
	for n in $NODES; do "$NODE_DAEMON" start "$n"; done
}

# unique_image TAG: the small image plus a layer of its own, pushed as
# $REGISTRY/podman-hpc/TAG:t (a digest no node has).
work=$(mktemp -d)
trap 'rm -rf "$work"; restore' EXIT
unique_image() {
	rm -rf "$work/img" "$work/tree"
	cp -r "$repo/build/images/small" "$work/img"
	mkdir -p "$work/tree"
	echo "$1 $(date +%s%N)" >"$work/tree/scale-marker"
	tar -C "$work/tree" -cf "$work/layer.tar" scale-marker
	umoci raw add-layer --image "$work/img:latest" "$work/layer.tar"
	skopeo copy -q --dest-tls-verify=false "oci:$work/img:latest" "docker://$REGISTRY/podman-hpc/$1:t"
}

reglog=$LAB/run/registry/registry.log
# blob_gets REPO OFFSET: podman-hpc's GETs of REPO's blobs since OFFSET.
blob_gets() {
	tail -c +"$(($2 + 1))" "$reglog" | grep -c "\"GET /v2/podman-hpc/$1/blobs/sha256:[0-9a-f]* HTTP/[0-9.]*\" 200 .*\"podman-hpc\"" || true
}

secs() { awk -v ns="$1" 'BEGIN {printf "%.3f", ns / 1e9}'; }
# median_s CMD...: the median wall time of RUNS runs, in s.
median_s() {
	local t0
	for _ in $(seq "$RUNS"); do
		t0=$(date +%s%N)
		"$@" >/dev/null 2>&1 || { echo "scale.sh: '$*' failed" >&2; return 1; }
		echo $(($(date +%s%N) - t0))
	done | sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int((NR+1)/2)] / 1e9}'
}

# cold N TAG: seconds of the first step of a fresh image on N nodes, and
# the registry's blob fetches for it.
cold() {
	local off t0 t
	unique_image "$2"
	off=$(stat -c %s "$reglog")
	t0=$(date +%s%N)
	srun -N"$1" --container-image="$REGISTRY/podman-hpc/$2:t" true >/dev/null
	t=$(($(date +%s%N) - t0))
	sleep 0.2 # the registry's log line follows its answer
	echo "$(secs "$t") $(blob_gets "$2" "$off")"
}

declare -A cold_shared fetch_shared warm bare cold_local fetch_local
ts=$(date +%s)
echo "scale: site image store on" >&2
echo "shared_store = $SHARED_DIR/store-$ts" >>"$conf"
[ -d "$SHARED_DIR" ] || mkdir -m 0700 "$SHARED_DIR"
mkdir -m 0700 "$SHARED_DIR/store-$ts"
restart_daemons
for n in $sizes; do
	read -r "cold_shared[$n]" "fetch_shared[$n]" < <(cold "$n" "scale-s$n-$ts")
	warm[$n]=$(median_s srun -N"$n" --container-image="$REGISTRY/podman-hpc/scale-s$n-$ts:t" true)
	bare[$n]=$(median_s srun -N"$n" true)
	printf '  %-52s %10s s (%s blob fetches)\n' "N=$n: cold, site image store" "${cold_shared[$n]}" "${fetch_shared[$n]}"
	printf '  %-52s %10s s, bare %s s\n' "N=$n: warm" "${warm[$n]}" "${bare[$n]}"
done
echo "scale: node-local only (no store)" >&2
cp "$conf.scale-orig" "$conf"
restart_daemons
for n in $sizes; do
	read -r "cold_local[$n]" "fetch_local[$n]" < <(cold "$n" "scale-l$n-$ts")
	printf '  %-52s %10s s (%s blob fetches)\n' "N=$n: cold, node-local only" "${cold_local[$n]}" "${fetch_local[$n]}"
done
rm -rf "${SHARED_DIR:?}/store-$ts"

dat=$repo/build/scale.dat
{
	echo "# nodes cold_shared_s cold_local_s warm_s bare_s fetches_shared fetches_local"
	for n in $sizes; do
		echo "$n ${cold_shared[$n]} ${cold_local[$n]} ${warm[$n]} ${bare[$n]} ${fetch_shared[$n]} ${fetch_local[$n]}"
	done
} >"$dat"
{
	echo '"scale": {"image": "small + 1 layer (3 blobs with its config)", "points": ['
	sep=""
	for n in $sizes; do
		printf '%s  {"nodes": %s, "cold_s": %s, "cold_local_s": %s, "warm_s": %s, "bare_s": %s, "blob_fetches": %s, "blob_fetches_local": %s}' \
			"$sep" "$n" "${cold_shared[$n]}" "${cold_local[$n]}" "${warm[$n]}" "${bare[$n]}" "${fetch_shared[$n]}" "${fetch_local[$n]}"
		sep=$',\n'
	done
	echo
	echo ']}'
} >"$out"
if command -v gnuplot >/dev/null; then
	gnuplot <<-GP
	set terminal png size 900,540
	set output "$repo/build/scale.png"
	set title "srun --container-image on N nodes (test cluster, one 2-core VM)"
	set xlabel "nodes"
	set ylabel "step time (s)"
	set logscale x 2
	set key top left
	set grid
	plot "$dat" using 1:2 with linespoints title "cold, site image store", \
	     "$dat" using 1:3 with linespoints title "cold, node-local only", \
	     "$dat" using 1:4 with linespoints title "warm (cached)", \
	     "$dat" using 1:5 with linespoints title "bare srun"
	GP
	echo "wrote build/scale.png" >&2
else
	echo "scale.sh: gnuplot missing (make deps): no build/scale.png" >&2
fi
