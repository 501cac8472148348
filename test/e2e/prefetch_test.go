//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// nodeHasImage: the node's cache holds digest (podman-hpcd images, as root).
func nodeHasImage(t *testing.T, node, digest string) bool {
	r := run(t, cluster["NODE_EXEC"], node, cluster["PODMAN_HPCD"], "images", "--socket", cluster["PODMAN_HPCD_SOCKET"])
	return strings.Contains(r.stdout, strings.TrimPrefix(digest, "sha256:")[:12])
}

// With #SBATCH --container-image, every node of the allocation gets the
// image at the job's start, before any step runs there.
func TestPrefetchAtJobStart(t *testing.T) {
	requireRoot(t)
	ns := nodes()
	if len(ns) < 2 {
		t.Skip("needs 2 nodes")
	}
	word := fmt.Sprint(time.Now().UnixNano())
	ref, _ := uniqueImage(t, word) // on no node yet
	dir := readableTempDir(t)
	os.Chmod(dir, 0o777)
	script := fmt.Sprintf(`#!/bin/sh
touch %[1]s/started
while [ ! -e %[1]s/go ]; do sleep 0.2; done
echo $PODMAN_HPC_IMAGE_DIGESTS
`, dir)
	id, out := sbatchAsUser(t, dir, script, fmt.Sprintf("-N%d", len(ns)), "--container-image="+ref, "--container-mounts="+dir+":"+dir)
	waitFile(t, filepath.Join(dir, "started"), id)
	// The digest the job pinned, from a user's resolve (the registry's answer).
	r := asUser(t, cluster["PODMAN_HPCD"], "resolve", "--config", filepath.Join(cluster["LAB"], "etc", "podman-hpcd.conf"), ref)
	mustSucceed(t, r)
	digest := regexp.MustCompile(`sha256:[0-9a-f]{64}`).FindString(r.stdout)
	if digest == "" {
		t.Fatalf("resolve: %s", r)
	}
	deadline := time.Now().Add(60 * time.Second)
	for _, n := range ns[1:] { // no step has run on these
		for !nodeHasImage(t, n, digest) {
			if time.Now().After(deadline) {
				t.Errorf("%s did not get the image at the job's start", n)
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, n := range ns[1:] {
		if !strings.Contains(daemonLog(t, n), "prefetched") {
			t.Errorf("%s: no prefetch in the daemon's log", n)
		}
	}
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	waitJob(t, id)
	got, _ := os.ReadFile(out)
	if !strings.Contains(string(got), digest) {
		t.Errorf("the job ran another digest than %s:\n%s", digest, got)
	}
}

// A job whose image cannot be had fails at once, with the cause: sbatch
// refuses it at submission.
func TestPrefetchMissingImageFailsAtSubmission(t *testing.T) {
	requireRoot(t)
	ref := fmt.Sprintf("%s/podman-hpc/no-such-image-%d:t", cluster["REGISTRY"], time.Now().UnixNano())
	dir := readableTempDir(t)
	os.Chmod(dir, 0o777)
	path := filepath.Join(dir, "job.sh")
	os.WriteFile(path, []byte("#!/bin/sh\ntrue\n"), 0o755)
	r := asUser(t, "sbatch", "--container-image="+ref, path)
	if r.code == 0 {
		t.Fatalf("sbatch accepted a job whose image does not exist: %s", r)
	}
	if !strings.Contains(r.stderr, "podman-hpc: failed to import docker image: "+ref+": manifest unknown") || !strings.Contains(r.stderr, "manifest unknown") {
		t.Errorf("sbatch's error does not name the image and the cause:\n%s", r.stderr)
	}
	r = asUser(t, "srun", "--container-image="+ref, "true")
	if r.code == 0 || !strings.Contains(r.stderr, "manifest unknown") {
		t.Errorf("srun: %s", r)
	}
}
