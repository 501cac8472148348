#!/bin/bash
# demo.sh - what make demo shows, on the running test cluster: an MPI job
# across two nodes, first on the bare nodes, then with --container-image.
set -euo pipefail
repo=$(readlink -f "$(dirname "$0")/..")
# shellcheck disable=SC1091
. "$repo/build/cluster.env"
nodes=$(wc -w <<<"${NODES:?}")
[ "$nodes" -ge 2 ] || { echo "demo.sh: needs 2 nodes, the cluster has $nodes" >&2; exit 1; }

# The ring on the host, for the bare-metal run (the image has its own copy).
mkdir -p "$repo/build"
if [ ! -x "$repo/build/ring" ] || [ "$repo/test/images/ring.c" -nt "$repo/build/ring" ]; then
	mpicc.openmpi -O2 -o "$repo/build/ring" "$repo/test/images/ring.c"
fi

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "== the test cluster: $NODES, registry $REGISTRY"
step sinfo -N
step srun -N2 --ntasks-per-node=2 --mpi=pmix "$repo/build/ring"

echo
echo "== the same ring in the image $MPI_IMAGE"
if out=$(srun -N2 --ntasks-per-node=2 --mpi=pmix --container-image="$MPI_IMAGE" "$MPI_RING" 2>&1); then
	echo "$out"
	ranks=$(grep -c '^ring: rank .* of ' <<<"$out" || true)
	echo "$ranks ranks ran in $nodes containers (one per node)"
else
	echo "$out" | grep 'podman-hpc:' | sort -u
	echo "(containers are not implemented yet in this version: the plugin and the daemon refuse clearly)"
fi
