#!/bin/bash
# demo.sh - what make demo shows, on the running test cluster: the MPI ring
# across two nodes in a container image pulled from the test registry.
set -euo pipefail
repo=$(readlink -f "$(dirname "$0")/..")
# shellcheck disable=SC1090,SC1091
. "$repo/build/cluster${PHPC_LAB_ID:-}.env"
nodes=$(wc -w <<<"${NODES:?}")
[ "$nodes" -ge 2 ] || { echo "demo.sh: needs 2 nodes, the cluster has $nodes" >&2; exit 1; }

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

echo "== a Slurm cluster of $nodes nodes on this machine, registry $REGISTRY"
step sinfo -N

echo
echo "== the MPI ring in $MPI_IMAGE: pulled and squashed once per node, then run"
before=$(cat "$LAB"/run/node*/podman-hpcd.log | grep -c 'msg="container ready"' || true)
step srun -N2 --ntasks-per-node=2 --mpi=pmix --container-image="$MPI_IMAGE" "$MPI_RING" | tee "$repo/build/demo.out"
ranks=$(grep -c '^ring: rank [0-9]* of ' "$repo/build/demo.out" || true)
after=$(cat "$LAB"/run/node*/podman-hpcd.log | grep -c 'msg="container ready"' || true)
echo
echo "$ranks ranks ran in $((after - before)) containers (one per node, every task of a node joined it)"

echo
echo "== again, the image now cached on every node"
t0=$(date +%s%N)
srun -N2 --ntasks-per-node=2 --mpi=pmix --container-image="$MPI_IMAGE" "$MPI_RING" >/dev/null
echo "the same step took $((($(date +%s%N) - t0) / 1000000)) ms"
step "$NODE_EXEC" node1 "$PODMAN_HPCD" images --socket "$PODMAN_HPCD_SOCKET"
