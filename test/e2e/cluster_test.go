//go:build e2e

package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
)

// Every node answers, with its own hostname.
func TestJobAcrossNodes(t *testing.T) {
	r := srun(t, "-N", "2", "-l", "hostname")
	mustSucceed(t, r)
	var got []string
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		_, host, _ := strings.Cut(line, ": ")
		got = append(got, host)
	}
	slices.Sort(got)
	if !slices.Equal(got, nodes()[:2]) {
		t.Errorf("hostnames %q, want %q", got, nodes()[:2])
	}
}

// A job of an ordinary user runs as that user on every node.
func TestJobAsUnprivilegedUser(t *testing.T) {
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	if uid == "" || uid == "0" {
		t.Fatalf("test user uid %q", uid)
	}
	r := asUser(t, "srun", "-N", "2", "id", "-u")
	mustSucceed(t, r)
	for _, line := range strings.Fields(r.stdout) {
		if line != uid {
			t.Errorf("task ran as uid %s, want %s", line, uid)
		}
	}
	if n := len(strings.Fields(r.stdout)); n != 2 {
		t.Errorf("%d tasks reported, want 2", n)
	}
}

// Each node has its own mount namespace: node-local storage differs per node
// and is not mounted on the host.
func TestNodeLocalMounts(t *testing.T) {
	local := cluster["LAB"] + "/nodelocal"
	seen := map[string]bool{}
	for _, n := range nodes() {
		r := run(t, cluster["NODE_EXEC"], n, "findmnt", "-n", "-o", "SOURCE", local)
		mustSucceed(t, r)
		src := strings.TrimSpace(r.stdout)
		if src != "nodelocal-"+n || seen[src] {
			t.Errorf("%s: node-local disk %q", n, src)
		}
		seen[src] = true
	}
	if r := run(t, "findmnt", local); r.code == 0 {
		t.Errorf("node-local tmpfs visible on the host: %s", r.stdout)
	}
}

// Each node runs its own podman-hpcd, inside the node's namespaces.
func TestDaemonOnEveryNode(t *testing.T) {
	for _, n := range nodes() {
		r := run(t, cluster["NODE_EXEC"], n, cluster["PODMAN_HPCD"], "status", "--socket", cluster["PODMAN_HPCD_SOCKET"])
		mustSucceed(t, r)
		if !strings.Contains(r.stdout, " on "+n+":") {
			t.Errorf("%s: status says %q", n, r.stdout)
		}
	}
}

// The registry is reachable from inside a node and holds both test images,
// the MPI one in several layers.
func TestRegistryFromNode(t *testing.T) {
	for img, minLayers := range map[string]int{cluster["SMALL_IMAGE"]: 1, cluster["MPI_IMAGE"]: 4} {
		r := run(t, cluster["NODE_EXEC"], nodes()[0], "skopeo", "inspect", "--tls-verify=false", "docker://"+img)
		mustSucceed(t, r)
		var info struct{ Layers []string }
		if err := json.Unmarshal([]byte(r.stdout), &info); err != nil {
			t.Fatal(err)
		}
		if len(info.Layers) < minLayers {
			t.Errorf("%s: %d layers, want >= %d", img, len(info.Layers), minLayers)
		}
	}
}
