//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// restartDaemons restarts every node's podman-hpcd (it reads its config).
func restartDaemons(t *testing.T) {
	t.Helper()
	for _, n := range nodes() {
		mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", n))
		mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", n))
	}
}

// withSharedStore makes dir (created root's, 0700) every daemon's
// shared_store until the test ends.
func withSharedStore(t *testing.T, dir string) {
	t.Helper()
	requireRoot(t)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(cluster["LAB"], "etc", "podman-hpcd.conf")
	orig, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, configWith(orig, "shared_store = "+dir), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(conf, orig, 0o644)
		restartDaemons(t)
	})
	restartDaemons(t)
}

// blobGets counts the registry's GETs of repo's blobs by podman-hpc, by
// digest, in its log from offset on.
func blobGets(t *testing.T, repo string, offset int64) map[string]int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cluster["LAB"], "run", "registry", "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`"GET /v2/` + regexp.QuoteMeta(repo) + `/blobs/(sha256:[0-9a-f]{64}) HTTP/[0-9.]+" 200 .*"podman-hpc"`)
	got := map[string]int{}
	for _, m := range re.FindAllStringSubmatch(string(b[offset:]), -1) {
		got[m[1]]++
	}
	return got
}

func registryLogSize(t *testing.T) int64 {
	fi, err := os.Stat(filepath.Join(cluster["LAB"], "run", "registry", "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// uniqueImage pushes the small image with a /marker of its own (so that no
// node has it cached) and returns its reference and repository.
func uniqueImage(t *testing.T, word string) (string, string) {
	t.Helper()
	repo := fmt.Sprintf("podman-hpc/shared-%d", time.Now().UnixNano())
	ref := cluster["REGISTRY"] + "/" + repo + ":t"
	pushTag(t, markedImage(t, word), ref)
	return ref, repo
}

// With a site image store, a job on every node fetches each of the image's
// blobs from the registry once, not once per node; every node runs it.
func TestSharedStoreOnePullPerJob(t *testing.T) {
	ns := nodes()
	if len(ns) < 2 {
		t.Skip("needs 2 nodes")
	}
	withSharedStore(t, filepath.Join(t.TempDir(), "store"))
	word := fmt.Sprint(time.Now().UnixNano())
	ref, repo := uniqueImage(t, word)
	off := registryLogSize(t)
	r := asUser(t, "srun", fmt.Sprintf("-N%d", len(ns)), "--container-image="+ref, "cat", "/marker")
	mustSucceed(t, r)
	if got := strings.Count(r.stdout, word); got != len(ns) {
		t.Errorf("%d of %d nodes ran the image:\n%s", got, len(ns), r)
	}
	gets := blobGets(t, repo, off)
	if len(gets) < 2 {
		t.Fatalf("registry log: blob GETs %v; want the layers and the config", gets)
	}
	for d, n := range gets {
		if n != 1 {
			t.Errorf("blob %s fetched %d times by %d nodes, want once", d, n, len(ns))
		}
	}
}

// A builder killed mid-build: its lock goes unrenewed, another node takes
// over and builds; what the dead one left is never used, and a third node
// copies the finished image from the store.
func TestSharedStoreBuilderKilled(t *testing.T) {
	ns := nodes()
	if len(ns) < 3 {
		t.Skip("needs 3 nodes")
	}
	store := filepath.Join(t.TempDir(), "store")
	withSharedStore(t, store)
	repo := fmt.Sprintf("podman-hpc/killed-%d", time.Now().UnixNano())
	ref := cluster["REGISTRY"] + "/" + repo + ":t"
	word := fmt.Sprint(time.Now().UnixNano())
	pushTag(t, markedMPIImage(t, word), ref)

	// node1 starts building; it dies once its lock is there.
	cmd := exec.Command("runuser", "-u", cluster["TEST_USER"], "--", "env", "SLURM_CONF="+cluster["SLURM_CONF"],
		"srun", "-w", ns[0], "--container-image="+ref, "cat", "/marker")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if m, _ := filepath.Glob(filepath.Join(store, "locks", "*.lock")); len(m) == 1 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("node1 never took the build lock")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // into the download
	pidb, _ := os.ReadFile(filepath.Join(cluster["LAB"], "run", ns[0], "podman-hpcd.pid"))
	var pid int
	fmt.Sscan(string(pidb), &pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait() // srun fails: its daemon is gone
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", ns[0]))
	if m, _ := filepath.Glob(filepath.Join(store, "images", "*.json")); len(m) != 0 {
		t.Fatalf("an image is in the store though its builder died: %v", m)
	}

	r := asUser(t, "srun", "-w", ns[1], "--container-image="+ref, "cat", "/marker")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, word) {
		t.Fatalf("node2 did not run the image:\n%s", r)
	}
	if !strings.Contains(daemonLog(t, ns[1]), "taking over") {
		t.Error("node2's log does not say it took over the dead builder's lock")
	}
	if left, _ := filepath.Glob(filepath.Join(store, "images", ".tmp-*")); len(left) != 0 {
		t.Errorf("partial files left in the store: %v", left)
	}
	r = asUser(t, "srun", "-w", ns[2], "--container-image="+ref, "cat", "/marker")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, word) {
		t.Fatalf("node3 did not run the image:\n%s", r)
	}
	if !regexp.MustCompile(`image copied from the site image store.*built_by=` + ns[1]).MatchString(daemonLog(t, ns[2])) {
		t.Error("node3 did not copy node2's image from the store")
	}
}

// A full or read-only store: every node pulls for itself, the user is
// warned, and the store holds no partial file.
func TestSharedStoreFullOrReadOnly(t *testing.T) {
	ns := nodes()
	if len(ns) < 2 {
		t.Skip("needs 2 nodes")
	}
	for _, c := range []struct{ name, mount, warning, logged string }{
		{"full", "tmpfs", "the site image store is full", "no space left on device"},
		{"read-only", "ro", "the site image store is read-only", "read-only file system"},
	} {
		t.Run(c.name, func(t *testing.T) {
			requireRoot(t)
			store := filepath.Join(t.TempDir(), "store")
			os.MkdirAll(store, 0o700)
			// Mounted on each node (host mounts do not reach the nodes'
			// namespaces).
			for _, n := range ns {
				if c.mount == "tmpfs" {
					mustSucceed(t, run(t, cluster["NODE_EXEC"], n, "mount", "-t", "tmpfs", "-o", "size=64k,mode=0700", "phpc-full-store", store))
				} else {
					os.MkdirAll(filepath.Join(store, "images"), 0o700)
					os.MkdirAll(filepath.Join(store, "locks"), 0o700)
					mustSucceed(t, run(t, cluster["NODE_EXEC"], n, "sh", "-c", "mount --bind "+store+" "+store+" && mount -o remount,bind,ro "+store))
				}
			}
			t.Cleanup(func() {
				for _, n := range ns {
					run(t, cluster["NODE_EXEC"], n, "umount", store)
				}
			})
			withSharedStore(t, store)
			word := fmt.Sprint(time.Now().UnixNano())
			ref, _ := uniqueImage(t, word)
			offsets := map[string]int{}
			for _, n := range ns {
				offsets[n] = len(daemonLog(t, n))
			}
			r := asUser(t, "srun", fmt.Sprintf("-N%d", len(ns)), "--container-image="+ref, "cat", "/marker")
			mustSucceed(t, r)
			if got := strings.Count(r.stdout, word); got != len(ns) {
				t.Errorf("%d of %d nodes ran the image:\n%s", got, len(ns), r)
			}
			// The user is told by the step that pulled (the job prolog's
			// prefetch may have pulled instead: then its node's log says).
			warned := strings.Contains(r.stderr, c.warning)
			for _, n := range ns {
				log := daemonLog(t, n)[offsets[n]:]
				if !regexp.MustCompile(`level=WARN msg="site image store: .*` + c.logged).MatchString(log) {
					t.Errorf("%s: no warning about the store in the daemon's log:\n%s", n, log)
				}
			}
			if !warned && !strings.Contains(r.stderr, "waiting for") {
				t.Logf("srun's output has no warning (the prefetch pulled): %s", r.stderr)
			}
			for _, n := range ns {
				if r := run(t, cluster["NODE_EXEC"], n, "sh", "-c", "ls -A "+store+"/images | grep -c ."); strings.TrimSpace(r.stdout) != "0" {
					t.Errorf("%s: the store holds files:\n%s", n, run(t, cluster["NODE_EXEC"], n, "ls", "-la", store+"/images"))
				}
			}
		})
	}
}

// storedSize is the size of d's squashfs in the store, or -1: not there.
func storedSize(t *testing.T, store, ref string) int64 {
	t.Helper()
	entries, _ := filepath.Glob(filepath.Join(store, "images", "*.json"))
	for _, e := range entries {
		b, err := os.ReadFile(e)
		if err != nil {
			continue
		}
		var rec struct {
			Size    int64    `json:"size"`
			Sources []string `json:"sources"`
		}
		if json.Unmarshal(b, &rec) != nil {
			continue
		}
		repo := strings.TrimSuffix(ref, ":t")
		for _, src := range rec.Sources {
			if src == repo {
				if _, err := os.Stat(strings.TrimSuffix(e, ".json") + ".squashfs"); err != nil {
					return -1
				}
				return rec.Size
			}
		}
	}
	return -1
}

// A user's images in the store hold at most shared_store_max_per_user:
// one more removes that user's least recently used, never another user's;
// an image larger than the whole bound is not stored, and runs anyway.
func TestSharedStoreBoundPerUser(t *testing.T) {
	node := nodes()[0]
	store := filepath.Join(t.TempDir(), "store")
	withSharedStore(t, store)
	// The first image measures what one takes; the bound then holds one
	// and a half of them.
	refA, _ := uniqueImage(t, "a")
	mustSucceed(t, asUser(t, "srun", "-N1", "-w", node, "--container-image="+refA, "true"))
	size := storedSize(t, store, refA)
	if size <= 0 {
		t.Fatalf("the first image is not in the store")
	}
	refOther, _ := uniqueImage(t, "other")
	mustSucceed(t, asOther(t, "srun", "-N1", "-w", node, "--container-image="+refOther, "true"))

	conf := filepath.Join(cluster["LAB"], "etc", "podman-hpcd.conf")
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, configWith(b, fmt.Sprintf("shared_store_max_per_user = %d", size*3/2)), 0o644); err != nil {
		t.Fatal(err)
	}
	restartDaemons(t)
	refB, _ := uniqueImage(t, "b")
	mustSucceed(t, asUser(t, "srun", "-N1", "-w", node, "--container-image="+refB, "true"))
	if storedSize(t, store, refB) <= 0 {
		t.Error("the user's new image is not in the store")
	}
	if storedSize(t, store, refA) >= 0 {
		t.Error("the user's older image stayed past their share")
	}
	if storedSize(t, store, refOther) <= 0 {
		t.Error("another user's image went for this user's")
	}

	// A bound smaller than one image: it runs, and is not stored.
	if err := os.WriteFile(conf, configWith(b, fmt.Sprintf("shared_store_max_per_user = %d", size/2)), 0o644); err != nil {
		t.Fatal(err)
	}
	restartDaemons(t)
	refC, _ := uniqueImage(t, "c")
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+refC, "true")
	mustSucceed(t, r)
	if !strings.Contains(r.stderr, "shared_store_max_per_user") {
		t.Errorf("srun's output does not say why the image was not stored:\n%s", r)
	}
	if storedSize(t, store, refC) >= 0 {
		t.Error("an image larger than the bound was stored")
	}
	if storedSize(t, store, refB) <= 0 {
		t.Error("an image too large to store made room for itself")
	}
}
