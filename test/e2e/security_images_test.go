//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Security of the image side (issue 12, items 7 and 11): what a user's
// auth file, squashfs files and pulls can make the node's root daemon do.

// daemonPath is the PATH the node's daemon runs with.
func daemonPath(t *testing.T, node string) string {
	t.Helper()
	pid, err := os.ReadFile(filepath.Join(cluster["LAB"], "run", node, "podman-hpcd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile("/proc/" + strings.TrimSpace(string(pid)) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range strings.Split(string(env), "\x00") {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return v
		}
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// A credHelpers entry in a user's auth file used to make the daemon run
// docker-credential-NAME as root. Such a helper, where the daemon's PATH
// finds it on the node, is not run: a public image still pulls, and the
// user is told why their helpers are ignored.
func TestSecurityCredentialHelpersNotRun(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	// An empty directory of the daemon's PATH gets a tmpfs, on this node
	// only, with the helper in it.
	var binDir string
	for _, d := range strings.Split(daemonPath(t, node), ":") {
		r := run(t, cluster["NODE_EXEC"], node, "sh", "-c", `[ -d "$1" ] && [ -z "$(ls -A "$1")" ]`, "sh", d)
		if r.code == 0 {
			binDir = d
			break
		}
	}
	if binDir == "" {
		t.Skip("no empty directory in the daemon's PATH to put a credential helper in")
	}
	mustSucceed(t, run(t, cluster["NODE_EXEC"], node, "mount", "-t", "tmpfs", "-o", "mode=0755,size=1m", "phpc-e2e-helper", binDir))
	t.Cleanup(func() { run(t, cluster["NODE_EXEC"], node, "umount", binDir) })
	markers := readableTempDir(t)
	if err := os.Chmod(markers, 0o777); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(markers, "helper-ran")
	helper := "#!/bin/sh\nid -u >>" + marker + "\ncat >/dev/null\necho '{\"ServerURL\":\"x\",\"Username\":\"node\",\"Secret\":\"node-secret\"}'\n"
	mustSucceed(t, run(t, cluster["NODE_EXEC"], node, "sh", "-c",
		`printf '%s' "$2" >"$1/docker-credential-phpce2e" && chmod 0755 "$1/docker-credential-phpce2e"`, "sh", binDir, helper))

	authDir := readableTempDir(t)
	auth := filepath.Join(authDir, "auth.json")
	reg := cluster["REGISTRY"]
	body := fmt.Sprintf(`{"auths":{},"credHelpers":{%q:"phpce2e"},"credsStore":"phpce2e"}`, reg)
	if err := os.WriteFile(auth, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	// A missing image makes the daemon ask the registry whatever it has
	// cached: with the helper honoured, it would run for that request.
	missing := reg + "/podman-hpc/no-such-image:e2e"
	for _, img := range []string{cluster["SMALL_IMAGE"], missing} {
		r := asUser(t, "env", "REGISTRY_AUTH_FILE="+auth, "srun", "-N1", "-w", node, "--container-image="+img, "cat", "/etc/os-release")
		if img == missing {
			if r.code == 0 || !strings.Contains(r.stderr, "no-such-image") {
				t.Errorf("missing image: %s", r)
			}
		} else {
			mustSucceed(t, r)
		}
		if !strings.Contains(r.stderr, "credential helpers (credsStore/credHelpers) in your auth file are not run on the node") {
			t.Errorf("%s: the user is not told that their helpers are not run:\n%s", img, r)
		}
	}
	if b, err := os.ReadFile(marker); err == nil {
		t.Errorf("the credential helper ran on %s (as uid %s)", node, strings.TrimSpace(string(b)))
	}
	checkNothingLeft(t, node)
}

// squashfsWith makes a squashfs as root from a directory holding one file
// (prepare may change it: modes, xattrs), with mksquashfs's extra
// arguments (pseudo definitions), readable by the test user.
func squashfsWith(t *testing.T, dir string, prepare func(root string) error, extra ...string) string {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "file"), []byte("data\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if prepare != nil {
		if err := prepare(src); err != nil {
			t.Skipf("cannot prepare the image's source here: %v", err)
		}
	}
	out := filepath.Join(dir, fmt.Sprintf("image-%d.sqsh", time.Now().UnixNano()))
	args := append([]string{src, out, "-noappend", "-quiet", "-no-progress"}, extra...)
	if b, err := exec.Command("mksquashfs", args...).CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v: %s", err, b)
	}
	if err := os.Chmod(out, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// A squashfs file is checked before the kernel sees it: a device node or a
// trusted.overlay xattr is refused with a one-line reason, and nothing is
// left mounted. (Setuid files and file capabilities are inert on its
// nosuid mount under no_new_privs: security_task_test.go.)
func TestSecuritySquashfsFileContent(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skipf("%q not found in PATH", "mksquashfs")
	}
	node := nodes()[0]
	dir := readableTempDir(t)
	xattr := func(name, value string) func(string) error {
		return func(root string) error { return unix.Lsetxattr(filepath.Join(root, "file"), name, []byte(value), 0) }
	}
	for _, tc := range []struct {
		name, want string
		file       string
	}{
		{"device node", "/dev/sda is a device node", squashfsWith(t, dir, nil, "-p", "dev d 755 0 0", "-p", "dev/sda b 666 0 0 8 0")},
		{"overlay xattr", `"trusted.overlay.redirect"`, squashfsWith(t, dir, xattr("trusted.overlay.redirect", "/etc"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+tc.file, "/file")
			if r.code == 0 {
				t.Fatalf("the image ran: %s", r)
			}
			var line string
			for _, l := range strings.Split(r.stderr, "\n") {
				if strings.Contains(l, "unsafe squashfs file") {
					line = l
				}
			}
			if line == "" || !strings.Contains(line, tc.want) || !strings.Contains(line, tc.file) {
				t.Errorf("no one-line refusal naming the file and %q:\n%s", tc.want, r)
			}
			checkNothingLeft(t, node)
		})
	}
	// None of them was kept in the node's cache.
	if out := podmanHpcd(t, node, "images").stdout; strings.Contains(out, dir) {
		t.Errorf("a refused file is in the cache:\n%s", out)
	}
}

// A user has at most max_pulls_per_user (2) pulls running on a node: a
// third waits, saying so in srun's output, and runs once one of the
// others is done. Two squashfs files of 250,000 directories keep the
// daemon checking them for seconds.
func TestSecurityPullsPerUser(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skipf("%q not found in PATH", "mksquashfs")
	}
	node := nodes()[0]
	dir := readableTempDir(t)
	var pf bytes.Buffer
	// 250,000 directories: a check of some 20 s alone, long enough to
	// catch both under way (a million took 1.5 min, past the step's
	// 2-minute limit on a loaded machine).
	for i := range 500 {
		fmt.Fprintf(&pf, "d%d d 755 0 0\n", i)
		for j := range 500 {
			fmt.Fprintf(&pf, "d%d/e%d d 755 0 0\n", i, j)
		}
	}
	pseudo := filepath.Join(t.TempDir(), "pseudo")
	if err := os.WriteFile(pseudo, pf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	slow := squashfsWith(t, dir, nil, "-pf", pseudo, "-comp", "lz4")
	slow2 := filepath.Join(dir, "slow2.sqsh") // another file: another pull
	b, err := os.ReadFile(slow)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(slow2, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The third: the small test image as an OCI archive, which runs.
	layout := filepath.Join("..", "..", "build", "images", "small")
	archive := filepath.Join(dir, "small.tar")
	if b, err := exec.Command("tar", "-C", layout, "-cf", archive, ".").CombinedOutput(); err != nil {
		t.Skipf("no OCI layout of the small image at %s: %v: %s", layout, err, b)
	}
	if err := os.Chmod(archive, 0o644); err != nil {
		t.Fatal(err)
	}
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	t.Cleanup(func() {
		for _, f := range []string{slow, slow2, "oci-archive:" + archive} {
			run(t, cluster["NODE_EXEC"], node, "runuser", "-u", cluster["TEST_USER"], "--", cluster["PODMAN_HPCD"], "rmi", "--socket", cluster["PODMAN_HPCD_SOCKET"], f)
		}
	})

	var wg sync.WaitGroup
	slowRuns := make([]result, 2)
	for i, f := range []string{slow, slow2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slowRuns[i] = asUser(t, "srun", "-N1", "-w", node, "--container-image="+f, "/file")
		}()
	}
	// Both are being checked (their copies are in the cache's directory)
	// before the third is asked for.
	images := filepath.Join(cluster["LAB"], "nodelocal", "images", "images")
	copying := 0
	for deadline := time.Now().Add(30 * time.Second); copying < 2 && time.Now().Before(deadline); {
		r := run(t, cluster["NODE_EXEC"], node, "sh", "-c", `ls -a "$1" | grep -c '^\.new-'`, "sh", images)
		fmt.Sscan(strings.TrimSpace(r.stdout), &copying)
		time.Sleep(20 * time.Millisecond)
	}
	if copying < 2 {
		wg.Wait()
		t.Fatalf("the two slow pulls were never under way at once (uid %s): %v", uid, slowRuns)
	}
	third := asUser(t, "srun", "-N1", "-w", node, "--container-image=oci-archive:"+archive, "cat", "/etc/os-release")
	wg.Wait()
	mustSucceed(t, third)
	if !strings.Contains(third.stdout, "ID=podman-hpc-small") {
		t.Errorf("the third step did not run the image: %s", third)
	}
	if !strings.Contains(third.stderr, "pulls of yours already run on this node") || !strings.Contains(third.stderr, "max_pulls_per_user") {
		t.Errorf("the third pull did not wait, or did not say so:\n%s", third)
	}
	for i, r := range slowRuns {
		if strings.Contains(r.stderr, "max_pulls_per_user") {
			t.Errorf("slow pull %d waited:\n%s", i, r)
		}
		if strings.Contains(r.stderr, "unsafe squashfs file") || strings.Contains(r.stderr, "image too large") {
			t.Errorf("slow pull %d refused:\n%s", i, r)
		}
	}
	checkNothingLeft(t, node)
}
