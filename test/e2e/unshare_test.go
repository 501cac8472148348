//go:build e2e

package e2e

import (
	"regexp"
	"strconv"
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

// Joining an existing container cannot unshare a namespace it shares with
// the node: asking for one fails, naming it; asking for one it has works.
func TestContainerUnshareOnExisting(t *testing.T) {
	img := cluster["SMALL_IMAGE"]
	r := inAllocation(t, `
srun --container-image=`+img+` --container-name=shared true
srun --container-name=shared --container-unshare=net true; echo "shared-net=$?"
srun --container-image=`+img+` --container-name=private --container-unshare=net,ipc readlink /proc/self/ns/net >&2
srun --container-name=private --container-unshare=net readlink /proc/self/ns/net >&2; echo "private-net=$?"
srun --container-name=private --container-unshare=uts true; echo "private-uts=$?"
`)
	mustSucceed(t, r)
	for _, want := range []string{
		"shared-net=1", "private-net=0", "private-uts=1",
		"--container-unshare=net: the container shared is not in a separate net namespace",
		"--container-unshare=uts: the container private is not in a separate uts namespace",
	} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("lacks %q:\n%s", want, r)
		}
	}
	if ns := regexp.MustCompile(`net:\[\d+\]`).FindAllString(r.stderr, -1); len(ns) != 2 || ns[0] != ns[1] {
		t.Errorf("the attached step is not in the container's private network: %q", ns)
	}
}

// --container-unshare=ipc gives the container its own /dev/shm and
// /dev/mqueue with its IPC namespace; by default both are the node's.
func TestContainerUnshareIPCShmAndMqueue(t *testing.T) {
	node := nodes()[0]
	nodeShm := strings.TrimSpace(run(t, cluster["NODE_EXEC"], node, "stat", "-c", "%d", "/dev/shm").stdout)
	// The node's /dev/mqueue, or "none" where it has no mqueue there: the
	// container's is the same by default.
	nodeMq := strings.TrimSpace(run(t, cluster["NODE_EXEC"], node, "sh", "-c", `[ "$(stat -f -c %T /dev/mqueue 2>/dev/null)" = mqueue ] && stat -c %d /dev/mqueue || echo none`).stdout)
	show := []string{"sh", "-c", `stat -c %d /dev/shm; stat -c %d /dev/mqueue 2>/dev/null || echo none; touch /dev/shm/phpc-e2e-ipc.$SLURM_JOB_ID; echo $SLURM_JOB_ID`}
	devs := func(args ...string) []string {
		t.Helper()
		r := srun(t, append(append([]string{"-N1", "-w", node, "--container-image=" + cluster["SMALL_IMAGE"]}, args...), show...)...)
		mustSucceed(t, r)
		f := strings.Fields(r.stdout)
		if len(f) != 3 {
			t.Fatalf("%q: %s", args, r)
		}
		// The node's /dev/shm has the file when the container's is the node's.
		left := run(t, cluster["NODE_EXEC"], node, "rm", "/dev/shm/phpc-e2e-ipc."+f[2]).code == 0
		return append(f[:2], strconv.FormatBool(left))
	}
	shared := devs()
	if shared[0] != nodeShm || shared[2] != "true" {
		t.Errorf("default: /dev/shm is not the node's (%s, file on the node %s; node's %s)", shared[0], shared[2], nodeShm)
	}
	if shared[1] != nodeMq {
		t.Errorf("default: /dev/mqueue %s, the node's %s", shared[1], nodeMq)
	}
	for _, args := range [][]string{{"--container-unshare=ipc"}, {"--container-unshare=ipc", "--container-remap-root"}} {
		own := devs(args...)
		if own[0] == nodeShm || own[2] != "false" {
			t.Errorf("%q: /dev/shm is the node's (%s, file on the node %s)", args, own[0], own[2])
		}
		if own[1] == "none" || own[1] == nodeMq {
			t.Errorf("%q: /dev/mqueue is not the container's own (%s; the node's %s)", args, own[1], nodeMq)
		}
	}
}
