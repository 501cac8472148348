//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// tail returns what was appended to a file since offset, and the new offset.
func tail(t *testing.T, path string, offset int64) (string, int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) < offset {
		offset = 0
	}
	return string(b[offset:]), int64(len(b))
}

func logPath(node string) string {
	return filepath.Join(cluster["LAB"], "run", node, "podman-hpcd.log")
}

func registryLog() string { return filepath.Join(cluster["LAB"], "run", "registry", "registry.log") }

func podmanHpcd(t *testing.T, node string, args ...string) result {
	t.Helper()
	full := append([]string{node, cluster["PODMAN_HPCD"]}, args...)
	full = append(full[:2], append([]string{full[2], "--socket", cluster["PODMAN_HPCD_SOCKET"]}, full[3:]...)...)
	return run(t, cluster["NODE_EXEC"], full...)
}

// Concurrent steps on the same nodes pull the image once per node; a later
// job reuses it without fetching a single blob from the registry.
func TestConcurrentStepsPullOnce(t *testing.T) {
	img := cluster["MPI_IMAGE"]
	for _, n := range nodes()[:2] {
		// May not be cached yet; may still be pinned by the previous test's
		// container, which goes shortly after its srun returns.
		for i := 0; i < 50 && strings.Contains(podmanHpcd(t, n, "rmi", img).stderr, "in use"); i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	offsets := map[string]int64{}
	for _, n := range nodes()[:2] {
		_, offsets[n] = tail(t, logPath(n), 0)
	}
	var wg sync.WaitGroup
	results := make([]result, 3)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = srun(t, "-N2", "-w", strings.Join(nodes()[:2], ","), "--container-image="+img, "grep", "^ID=", "/etc/os-release")
		}()
	}
	wg.Wait()
	for i, r := range results {
		mustSucceed(t, r)
		if strings.Count(r.stdout, "ID=debian") != 2 {
			t.Errorf("step %d: %q", i, r.stdout)
		}
	}
	for _, n := range nodes()[:2] {
		log, _ := tail(t, logPath(n), offsets[n])
		if got := strings.Count(log, `msg="image pulled"`); got != 1 {
			t.Errorf("%s pulled %s %d times for 3 concurrent steps, want 1:\n%s", n, img, got, log)
		}
	}

	_, regOffset := tail(t, registryLog(), 0)
	mustSucceed(t, srun(t, "-N2", "-w", strings.Join(nodes()[:2], ","), "--container-image="+img, "true"))
	reg, _ := tail(t, registryLog(), regOffset)
	if strings.Contains(reg, "/blobs/") {
		t.Errorf("a job with the image cached fetched blobs:\n%s", reg)
	}
}

// Users manage their own images with the client commands; root sees all.
func TestImageCommands(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	asUserOnNode := func(args ...string) result {
		full := append([]string{node, "runuser", "-u", cluster["TEST_USER"], "--", cluster["PODMAN_HPCD"], args[0], "--socket", cluster["PODMAN_HPCD_SOCKET"]}, args[1:]...)
		return run(t, cluster["NODE_EXEC"], full...)
	}
	r := asUserOnNode("pull", cluster["SMALL_IMAGE"])
	mustSucceed(t, r)
	if !strings.HasPrefix(r.stdout, "sha256:") {
		t.Errorf("pull printed %q, want the digest", r.stdout)
	}
	mine := asUserOnNode("images")
	mustSucceed(t, mine)
	if !strings.Contains(mine.stdout, "podman-hpc/small") {
		t.Errorf("user's images lack the image they pulled:\n%s", mine.stdout)
	}
	if strings.Contains(mine.stdout, "USERS") {
		t.Errorf("a user sees who else uses images:\n%s", mine.stdout)
	}
	all := podmanHpcd(t, node, "images")
	mustSucceed(t, all)
	if !strings.Contains(all.stdout, "USERS") || !strings.Contains(all.stdout, cluster["TEST_USER"]) {
		t.Errorf("root's images lack the users column or the test user:\n%s", all.stdout)
	}
	r = asUserOnNode("rmi", cluster["REGISTRY"]+"/podman-hpc/never-pulled:1")
	if r.code == 0 {
		t.Errorf("rmi of an image the user never pulled succeeded")
	}
	r = asUserOnNode("pull", cluster["REGISTRY"]+"/podman-hpc/does-not-exist:1")
	if r.code == 0 || !strings.Contains(r.stderr, "does-not-exist") {
		t.Errorf("pull of a missing image: %s", r)
	}
}

// A failed pull is reported once per node, not once per task, in pyxis's
// words ("failed to import docker image: IMAGE: CAUSE"). (A missing tag
// fails srun before any node: digest_test.go; a digest reference is not
// resolved first.)
func TestFailedPullReportedOncePerNode(t *testing.T) {
	img := cluster["REGISTRY"] + "/podman-hpc/does-not-exist@sha256:" + strings.Repeat("0", 64)
	r := srun(t, "-N2", "--ntasks-per-node=3", "--container-image="+img, "true")
	if r.code == 0 {
		t.Fatal("step succeeded with a missing image")
	}
	per := map[string]int{}
	for _, m := range regexp.MustCompile(`slurmstepd-(\S+): error: podman-hpc: failed to import docker image: `+regexp.QuoteMeta(img)+`: \S`).FindAllStringSubmatch(r.stderr, -1) {
		per[m[1]]++
	}
	if len(per) != 2 {
		t.Errorf("the failure was reported by %d nodes, want 2: %v\n%s", len(per), per, r.stderr)
	}
	for n, got := range per {
		if got != 1 {
			t.Errorf("%s reported the failure %d times, want once:\n%s", n, got, r.stderr)
		}
	}
}

// A short name that no registries.conf search registry or alias resolves
// means Docker Hub, as under enroot (the test bed has no internet: the
// pull fails, naming where it went).
func TestShortNameMeansDockerHub(t *testing.T) {
	r := srun(t, "-N1", "--container-image=redis:5.0.8", "true")
	if r.code != 0 && !strings.Contains(r.stderr, "docker.io") {
		t.Errorf("redis:5.0.8 did not go to Docker Hub:\n%s", r)
	}
}
