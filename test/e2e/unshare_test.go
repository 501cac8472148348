//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// --container-unshare gives private namespaces on request; by default the
// container shares the node's.
func TestContainerUnshare(t *testing.T) {
	node := nodes()[0]
	nodeNet := strings.TrimSpace(run(t, cluster["NODE_EXEC"], node, "readlink", "/proc/self/ns/net").stdout)
	show := []string{"sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; cat /proc/net/dev | grep -c :"}
	r := srun(t, append([]string{"-N1", "-w", node, "--container-image=" + cluster["SMALL_IMAGE"]}, show...)...)
	mustSucceed(t, r)
	if lines := strings.Fields(r.stdout); len(lines) != 3 || lines[0] != nodeNet {
		t.Errorf("default: not the node's network: %q (node %s)", r.stdout, nodeNet)
	}
	r = srun(t, append([]string{"-N1", "-w", node, "--container-unshare=net,ipc", "--container-image=" + cluster["SMALL_IMAGE"]}, show...)...)
	mustSucceed(t, r)
	if lines := strings.Fields(r.stdout); len(lines) != 3 || lines[0] == nodeNet || lines[2] != "1" {
		t.Errorf("--container-unshare=net,ipc: want a private network with only lo: %q", r.stdout)
	}
	r = srun(t, "-N1", "--container-unshare=pid", "--container-image="+cluster["SMALL_IMAGE"], "true")
	if r.code == 0 || !strings.Contains(r.stderr, `--container-unshare: unknown namespace "pid"`) {
		t.Errorf("unknown namespace:\n%s", r)
	}
}
