#!/bin/bash
# node-exec.sh NODE CMD...: run CMD "on" a test node, inside the network, UTS
# and mount namespaces of that node's slurmd (so its mounts stay node-local).
set -euo pipefail
# shellcheck source=test/cluster/lib.sh
. "$(dirname "$(readlink -f "$0")")/lib.sh"
[ $# -ge 2 ] || { echo "usage: $0 NODE CMD..." >&2; exit 2; }
node=$1
shift
alive "$RUN/$node/slurmd.pid" slurmd || { echo "node-exec: no slurmd running for $node (is the cluster up? make cluster)" >&2; exit 1; }
exec nsenter -t "$(cat "$RUN/$node/slurmd.pid")" --net --uts --mount -- "$@"
