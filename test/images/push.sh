#!/usr/bin/env bash
# Push the layouts made by build.sh to a plain-HTTP test registry.
#
# Usage: push.sh REGISTRY OUTDIR     e.g. push.sh 127.0.0.1:5000 build/images
#
# Safe to repeat: skopeo checks which blobs the registry already has and
# uploads only the missing ones, so a second push takes about a second.
# Prints the pushed references, one per line, on stdout.
set -euo pipefail

die() { printf 'push.sh: error: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 2 ]] || { echo "usage: $0 REGISTRY OUTDIR" >&2; exit 2; }
registry=${1%/}
outdir=$2
command -v skopeo >/dev/null || die "skopeo not found"

# layout name in OUTDIR -> repository in the registry
declare -A repos=([small]=podman-hpc/small [mpi]=podman-hpc/mpi-ring [apt]=podman-hpc/apt [rpm]=podman-hpc/rpm)

names=(small mpi)
for name in "${names[@]}"; do
    [[ -f $outdir/$name/index.json ]] || die "$outdir/$name is not an OCI layout; run build.sh first"
done
# apt.sh's and rpm.sh's images, where they were built.
for name in apt rpm; do
    [[ ! -f $outdir/$name/index.json ]] || names+=("$name")
done

for name in "${names[@]}"; do
    ref="$registry/${repos[$name]}:latest"
    # v2s2 because some registries and older clients still reject OCI
    # manifests; the test registry speaks plain HTTP, hence no TLS checks.
    skopeo copy --quiet --format v2s2 --dest-tls-verify=false \
        "oci:$outdir/$name:latest" "docker://$ref" >&2 ||
        die "pushing $name to $ref failed"
    printf '%s\n' "$ref"
done
