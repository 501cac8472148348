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

// markedImage is an OCI layout of the small image whose /marker holds word.
func markedImage(t *testing.T, word string) string {
	t.Helper()
	return imageWithTree(t, func(tree string) {
		if err := os.WriteFile(filepath.Join(tree, "marker"), []byte(word+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
}

// markedMPIImage is markedImage of the MPI image (glibc: the host's srun
// runs in it, for batch scripts in the image).
func markedMPIImage(t *testing.T, word string) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	layout := filepath.Join(dir, "img")
	mustSucceed(t, run(t, "cp", "-r", "../../build/images/mpi", layout))
	tree := filepath.Join(dir, "tree")
	os.Mkdir(tree, 0o755)
	if err := os.WriteFile(filepath.Join(tree, "marker"), []byte(word+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustSucceed(t, run(t, "tar", "-C", tree, "-cf", filepath.Join(dir, "layer.tar"), "marker"))
	mustSucceed(t, run(t, "umoci", "raw", "add-layer", "--image", layout+":latest", filepath.Join(dir, "layer.tar")))
	mustSucceed(t, run(t, "chmod", "-R", "a+rX", dir))
	return "oci:" + layout + ":latest"
}

// pushTag copies an OCI layout (oci:PATH:latest) to the test registry as ref.
func pushTag(t *testing.T, layout, ref string) {
	t.Helper()
	mustSucceed(t, run(t, "skopeo", "copy", "-q", "--dest-tls-verify=false", layout, "docker://"+ref))
}

// markers are the /marker lines of a step's output, one per node.
func markers(out string) []string {
	var m []string
	for _, l := range strings.Split(out, "\n") {
		if l = strings.TrimSpace(l); l == "A" || l == "B" {
			m = append(m, l)
		}
	}
	return m
}

func allAre(got []string, want string, n int) bool {
	if len(got) != n {
		return false
	}
	for _, g := range got {
		if g != want {
			return false
		}
	}
	return true
}

// The case: node1 ran img:t before it moved; the next job, on every
// node, runs what the tag names when the job starts, node1 included (its
// tag_ttl does not keep the old image). The job's environment names the
// digest.
func TestDigestMovedTagNextJob(t *testing.T) {
	requireRoot(t)
	ns := nodes()
	if len(ns) < 2 {
		t.Skip("needs 2 nodes")
	}
	a, b := markedImage(t, "A"), markedImage(t, "B")
	ref := fmt.Sprintf("%s/podman-hpc/moved-%d:t", cluster["REGISTRY"], time.Now().UnixNano())
	pushTag(t, a, ref)
	r := asUser(t, "srun", "-w", ns[0], "--container-image="+ref, "cat", "/marker")
	mustSucceed(t, r)
	if got := markers(r.stdout); !allAre(got, "A", 1) {
		t.Fatalf("first step: %q\n%s", got, r)
	}
	pushTag(t, b, ref)
	r = asUser(t, "srun", fmt.Sprintf("-N%d", len(ns)), "--container-image="+ref, "sh", "-c", "cat /marker; echo $PODMAN_HPC_IMAGE_DIGESTS")
	mustSucceed(t, r)
	if got := markers(r.stdout); !allAre(got, "B", len(ns)) {
		t.Errorf("after the push, every node runs the new image; got %q\n%s", got, r)
	}
	// The job's environment names the digest it runs.
	want := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(ref+"="+ref) + `@sha256:[0-9a-f]{64}$`)
	if got := want.FindAllString(r.stdout, -1); len(got) != len(ns) {
		t.Errorf("PODMAN_HPC_IMAGE_DIGESTS does not name the job's digest on every node:\n%s", r)
	}
}

// sbatchAsUser submits script as the test user and returns the job id and
// the output file's path (read it once the job ended).
func sbatchAsUser(t *testing.T, dir, script string, args ...string) (string, string) {
	t.Helper()
	path := filepath.Join(dir, "job.sh")
	out := filepath.Join(dir, "job.out")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := asUser(t, "sbatch", append(append([]string{"--parsable", "-o", out, "-D", dir}, args...), path)...)
	id := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	if r.code != 0 || id == "" {
		t.Fatalf("sbatch did not submit: %s", r)
	}
	return id, out
}

func waitJob(t *testing.T, id string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !jobEnded(t, id) {
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not end in 2 minutes", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitFile waits for the job to create path.
func waitFile(t *testing.T, path, id string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if jobEnded(t, id) || time.Now().After(deadline) {
			t.Fatalf("job %s never wrote %s", id, path)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A tag that moves while a job runs: every step of the job, on every node,
// runs what the tag named at the job's first use, whether the batch script
// names the image on its sruns or runs in it (#SBATCH --container-image) and
// its sruns inherit it; the next job runs the new image.
func TestDigestOneDigestPerJob(t *testing.T) {
	requireRoot(t)
	ns := nodes()
	if len(ns) < 2 {
		t.Skip("needs 2 nodes")
	}
	n := len(ns)
	for _, mode := range []string{"srun", "sbatch"} {
		t.Run(mode, func(t *testing.T) {
			a, b := markedImage(t, "A"), markedImage(t, "B")
			if mode == "sbatch" {
				a, b = markedMPIImage(t, "A"), markedMPIImage(t, "B")
			}
			ref := fmt.Sprintf("%s/podman-hpc/moving-%s-%d:t", cluster["REGISTRY"], mode, time.Now().UnixNano())
			pushTag(t, a, ref)
			dir := readableTempDir(t)
			os.Chmod(dir, 0o777)
			image, args := " --container-image="+ref, []string(nil)
			script := "#!/bin/sh\n"
			if mode == "sbatch" {
				image, args = "", []string{"--container-image=" + ref, "--container-mounts=" + dir + ":" + dir}
				// The batch script itself runs in the image.
				script += "echo script: $(cat /marker)\n"
			}
			script += fmt.Sprintf(`srun -N%d%s cat /marker
touch %s/first
while [ ! -e %s/go ]; do sleep 0.2; done
srun -N%d%s cat /marker
`, n, image, dir, dir, n, image)
			id, out := sbatchAsUser(t, dir, script, append([]string{fmt.Sprintf("-N%d", n)}, args...)...)
			waitFile(t, filepath.Join(dir, "first"), id)
			pushTag(t, b, ref) // the tag moves between the job's steps
			// and one node hears of it within its tag_ttl (a user's pull).
			mustSucceed(t, run(t, cluster["NODE_EXEC"], ns[1], "runuser", "-u", cluster["TEST_USER"], "--",
				cluster["PODMAN_HPCD"], "pull", "--socket", cluster["PODMAN_HPCD_SOCKET"], ref))
			os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
			waitJob(t, id)
			got, _ := os.ReadFile(out)
			want := 2 * n
			if mode == "sbatch" {
				want++
				if !strings.Contains(string(got), "script: A") {
					t.Errorf("the batch script did not run the job's image:\n%s", got)
				}
			}
			if m := markers(strings.ReplaceAll(string(got), "script: ", "")); !allAre(m, "A", want) {
				t.Errorf("job %s ran %q, want %d times A:\n%s", id, m, want, got)
			}
			r := asUser(t, "srun", fmt.Sprintf("-N%d", n), "--container-image="+ref, "cat", "/marker")
			mustSucceed(t, r)
			if m := markers(r.stdout); !allAre(m, "B", n) {
				t.Errorf("the next job runs %q, want B on every node\n%s", m, r)
			}
		})
	}
}
