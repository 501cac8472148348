//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// podmanBuild builds, as the test user and with their own rootless podman,
// the small image with /marker and PHPC_BUILT added, tagged name; it is
// removed from their storage when the test ends. podman runs in a PID
// namespace of its own: what rootless podman leaves running goes with it.
func podmanBuild(t *testing.T, home, name string) {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skipf("%q not found in PATH", "podman")
	}
	// A lowercase path: podman names the base image after it.
	ctx, err := os.MkdirTemp("", "phpc-podman-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(ctx) })
	os.Chmod(ctx, 0o755)
	mustSucceed(t, run(t, "cp", "-r", "../../build/images/small", filepath.Join(ctx, "base")))
	os.WriteFile(filepath.Join(ctx, "marker"), []byte("built by podman\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte("FROM oci:"+ctx+"/base:latest\nCOPY marker /marker\nENV PHPC_BUILT="+name+"\n"), 0o644)
	mustSucceed(t, run(t, "chmod", "-R", "a+rX", ctx))
	mustSucceed(t, podmanAsUser(t, home, "build", "-q", "-t", name, ctx))
	t.Cleanup(func() { podmanAsUser(t, home, "rmi", "-f", name, "localhost"+filepath.Join(ctx, "base")) })
}

func podmanAsUser(t *testing.T, home string, args ...string) result {
	t.Helper()
	return run(t, "unshare", append([]string{"-pf", "--mount-proc", "runuser", "-u", cluster["TEST_USER"], "--",
		"env", "-i", "HOME=" + home, "PATH=/usr/bin:/bin", "podman"}, args...)...)
}

// podman://IMAGE runs what the user built with podman on the node, on every
// node of the step, without a registry; the daemon's podman leaves nothing
// running and the user's own podman's pause process alone. Root has no
// podman storage of a user's to name.
func TestPodmanImage(t *testing.T) {
	requireRoot(t)
	home := userHome(t)
	name := fmt.Sprintf("localhost/phpc-e2e-%d:1", time.Now().UnixNano())
	podmanBuild(t, home, name)
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	pauseFile := "/tmp/podman-run-" + uid + "/libpod/tmp/pause.pid"
	pauseBefore, _ := os.ReadFile(pauseFile)

	r := asUser(t, "srun", "-N2", "--container-image=podman://"+name, "sh", "-c", `cat /marker; echo "built=$PHPC_BUILT"`)
	mustSucceed(t, r)
	if strings.Count(r.stdout, "built by podman\n") != 2 || strings.Count(r.stdout, "built="+name+"\n") != 2 {
		t.Errorf("two tasks of the podman-built image printed %q", r.stdout)
	}
	if after, _ := os.ReadFile(pauseFile); string(after) != string(pauseBefore) {
		t.Errorf("the user's podman pause.pid went from %q to %q", pauseBefore, after)
	}
	for _, n := range nodes()[:2] {
		if log := daemonLog(t, n); !strings.Contains(log, "podman://"+name) {
			t.Errorf("%s: the daemon's log does not name podman://%s", n, name)
		}
		checkNothingLeft(t, n)
	}
	out := run(t, "ps", "-u", uid, "-o", "pid=,args=")
	for _, l := range strings.Split(out.stdout, "\n") {
		if strings.Contains(l, "podman") && !strings.Contains(l, "podman-hpc") && !strings.Contains(l, "<defunct>") {
			t.Errorf("a podman process of the user runs on: %s", l)
		}
	}

	// podman's own short name: localhost/NAME.
	r = asUser(t, "srun", "-N1", "--container-image=podman://"+strings.TrimPrefix(name, "localhost/"), "cat", "/marker")
	if r.code != 0 || r.stdout != "built by podman\n" {
		t.Errorf("the podman short name: %s", r)
	}

	r = srun(t, "-N1", "--container-image=podman://"+name, "true")
	if r.code == 0 || !strings.Contains(r.stderr, "root's is the node's") {
		t.Errorf("root's podman:// step: %s", r)
	}
	r = asUser(t, "srun", "-N1", "--container-image=podman://localhost/phpc-e2e-never-built:1", "true")
	if r.code == 0 || !strings.Contains(r.stderr, `your podman storage on this node has no image "localhost/phpc-e2e-never-built:1"`) {
		t.Errorf("a missing podman image: %s", r)
	}
}

// A node without a Docker daemon at the default socket refuses dockerd://
// with that cause; TestDockerdImage runs a real one (and its refusal of a
// user its socket does not let in) at a socket of its own.
func TestDockerdWithoutDocker(t *testing.T) {
	if _, err := os.Stat("/var/run/docker.sock"); err == nil {
		t.Skip("this machine runs a Docker daemon")
	}
	r := asUser(t, "srun", "-N1", "--container-image=dockerd://ubuntu:22.04", "true")
	t.Logf("user sees: %s", r.stderr)
	if r.code == 0 || !strings.Contains(r.stderr, "no Docker daemon on this node") || strings.Count(r.stderr, "dockerd://ubuntu:22.04") > 2 {
		t.Errorf("dockerd:// on a node without Docker: %s", r)
	}
}

// clientAsUser runs podman-hpcd's client on node as the test user, in dir,
// with HOME=home.
func clientAsUser(t *testing.T, node, dir, home string, args ...string) result {
	t.Helper()
	full := append([]string{node, "runuser", "-u", cluster["TEST_USER"], "--", "env", "-C", dir, "HOME=" + home,
		cluster["PODMAN_HPCD"], args[0], "--socket", cluster["PODMAN_HPCD_SOCKET"]}, args[1:]...)
	return run(t, cluster["NODE_EXEC"], full...)
}

// The daemon reads a user's podman storage as that user: a home (the
// client says which) whose storage is a symlink to a podman storage of
// root's, holding the image named, gets nothing from it, and nothing is
// written; nor does a HOME of root's.
func TestPodmanStorageOfRoot(t *testing.T) {
	requireRoot(t)
	dir := userDir(t, fmt.Sprintf("e2e-podman-root-%d", time.Now().UnixNano()))
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skipf("%q not found in PATH", "podman")
	}
	store, err := os.MkdirTemp("", "phpc-rootstore-") // 0700, root's
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		run(t, "podman", "--root", store+"/graph", "--runroot", store+"/run", "rmi", "-a", "-f")
		os.RemoveAll(store)
	})
	name := "localhost/phpc-e2e-secret:1"
	ctx := t.TempDir()
	os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte("FROM oci:"+ctx+"/base:latest\nCOPY secret /secret\n"), 0o644)
	os.WriteFile(filepath.Join(ctx, "secret"), []byte("root's secret\n"), 0o600)
	mustSucceed(t, run(t, "cp", "-r", "../../build/images/small", filepath.Join(ctx, "base")))
	// Lowercase: podman names the base after its path.
	lower := filepath.Join(store, "ctx")
	mustSucceed(t, run(t, "cp", "-r", ctx, lower))
	os.WriteFile(filepath.Join(lower, "Containerfile"), []byte("FROM oci:"+lower+"/base:latest\nCOPY secret /secret\n"), 0o644)
	root := []string{"--root", store + "/graph", "--runroot", store + "/run"}
	mustSucceed(t, run(t, "podman", append(root, "build", "-q", "-t", name, lower)...))
	if r := run(t, "podman", append(root, "image", "exists", name)...); r.code != 0 {
		t.Fatalf("root's storage lacks %s: %s", name, r)
	}

	fake := filepath.Join(dir, "home")
	share := filepath.Join(fake, ".local", "share", "containers")
	mustSucceed(t, asUser(t, "mkdir", "-p", share))
	mustSucceed(t, asUser(t, "ln", "-s", store+"/graph", filepath.Join(share, "storage")))
	for _, h := range []string{fake, "/root"} {
		r := clientAsUser(t, nodes()[0], dir, h, "import", "-o", "stolen.sqsh", "podman://"+name)
		t.Logf("HOME=%s: user sees: %s", h, strings.TrimSpace(r.stderr))
		if r.code == 0 || !strings.Contains(r.stderr, "podman://"+name) || !strings.Contains(r.stderr, "permission denied") || strings.Count(strings.TrimSpace(r.stderr), "\n") > 0 {
			t.Errorf("HOME=%s: import of root's image as the user: %s", h, r)
		}
		if _, err := os.Lstat(filepath.Join(dir, "stolen.sqsh")); err == nil {
			t.Errorf("HOME=%s: stolen.sqsh written", h)
		}
	}
	checkNothingLeft(t, nodes()[0])
}
