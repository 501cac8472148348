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

// Every entry point that takes a path from a user, crossed with hostile
// paths: the daemon's magic links (its descriptors by self, thread-self,
// its pid and /dev/fd; its root and cwd), FIFOs, sockets, device nodes,
// symlink loops and a FUSE mount of the user's that never answers. Each
// is refused with its reason, as the unprivileged test user through srun
// (or the socket, for import), nothing is left mounted, and the daemon
// still answers status at once. The paths are opened by a helper process
// of the user's (pkg/asuser): the daemon's /proc/self/fd/N once
// mounted another user's private image.
func TestSecurityHostilePaths(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, fmt.Sprintf("e2e-paths-%d", time.Now().UnixNano()))
	img := cluster["SMALL_IMAGE"]

	pid := strings.TrimSpace(onNode(t, node, "", "cat "+cluster["LAB"]+"/run/"+node+"/podman-hpcd.pid").stdout)
	// A descriptor of the daemon's on a file or directory (the cache's).
	fd := strings.TrimSpace(onNode(t, node, "", `for f in /proc/$1/fd/*; do l=$(readlink "$f"); case $l in /*) echo "${f##*/}";; esac; done | sort -n | tail -1`, pid).stdout)
	if pid == "" || fd == "" {
		t.Fatalf("no daemon pid (%q) or descriptor (%q) on %s", pid, fd, node)
	}
	magic := []string{
		"/proc/self/fd/" + fd,
		"/proc/thread-self/fd/" + fd,
		"/proc/" + pid + "/fd/" + fd,
		"/dev/fd/" + fd,
		"/proc/" + pid + "/root/etc",
		"/proc/" + pid + "/cwd",
	}
	mustSucceed(t, asUser(t, "sh", "-c", `cd "$1" && mkfifo fifo && ln -s loop2 loop1 && ln -s loop1 loop2 && mkdir fuse &&
		python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])' "$1/sock"`, "sh", dir))
	fuse := hangingFUSE(t, node, filepath.Join(dir, "fuse"))
	special := []string{filepath.Join(dir, "fifo"), filepath.Join(dir, "sock"), "/dev/null", filepath.Join(dir, "loop1")}

	type entry struct {
		name  string
		paths []string // the hostile paths that apply
		run   func(p string) result
	}
	files := append(append([]string{}, magic...), special...)
	dirs := append(append([]string{}, magic...), filepath.Join(dir, "loop1"))
	// srun holds the descriptor's number too (as the attack's shell did):
	// the plugin's own checks of the path in srun must not be what stops it.
	step := func(env []string, args ...string) result {
		user := append(append([]string{"-u", cluster["TEST_USER"], "--", "env", "SLURM_CONF=" + cluster["SLURM_CONF"]}, env...),
			"bash", "-c", "exec "+fd+"</dev/null; exec srun -w "+node+" -N1 -n1 \"$@\"", "bash")
		return run(t, "runuser", append(user, args...)...)
	}
	entries := []entry{
		{"--container-mounts", dirs, func(p string) result {
			return step(nil, "--container-image="+img, "--container-mounts="+p+":/loot", "ls", "/loot")
		}},
		{"$HOME", dirs, func(p string) result {
			return step([]string{"HOME=" + p}, "--container-image="+img, "--container-mount-home", "true")
		}},
		{"--container-image FILE", files, func(p string) result {
			return step(nil, "--container-image="+p, "true")
		}},
		{"--container-image oci-archive:", files, func(p string) result {
			return step(nil, "--container-image=oci-archive:"+p, "true")
		}},
		{"--container-image oci:", dirs, func(p string) result {
			return step(nil, "--container-image=oci:"+p, "true")
		}},
		{"--container-save", files, func(p string) result {
			return step(nil, "--container-image="+img, "--container-save="+p, "true")
		}},
		{"import -o", files, func(p string) result {
			return clientAsUser(t, node, dir, userHome(t), "import", "-f", "-o", p, img)
		}},
	}
	for _, e := range entries {
		for _, p := range e.paths {
			start := time.Now()
			r := e.run(p)
			took := time.Since(start)
			if r.code == 0 || strings.TrimSpace(r.stderr) == "" {
				t.Errorf("%s %s: not refused with a reason (%s):\n%s", e.name, p, took, limitOut(r.String(), 2000))
			} else {
				t.Logf("%s %s: refused in %s: %s", e.name, p, took.Round(time.Millisecond), lastLineOf(r.stderr))
			}
			daemonAnswers(t, node)
		}
	}
	// The FUSE mount through the socket, as slurmstepd sends a step's
	// request: srun itself (the user's own process) would wait on it first.
	client := buildWireclient(t)
	ids := strings.Fields(asUser(t, "sh", "-c", "id -u; id -g").stdout)
	for i, c := range []struct {
		fields []string
		want   string
	}{
		{[]string{"image=" + img, "mount=" + fuse + ":/loot"}, "FUSE"},
		{[]string{"image=" + img, "mount_home=1", "jobenv=HOME=" + fuse}, "FUSE"},
		{[]string{"image=" + fuse + "/x"}, "no answer after"},
		{[]string{"image=oci-archive:" + fuse + "/x"}, "no answer after"},
	} {
		start := time.Now()
		args := append([]string{"-socket", cluster["PODMAN_HPCD_SOCKET"], "-type", "2", "job=999003", fmt.Sprint("step=", i), "uid=" + ids[0], "gid=" + ids[1]}, c.fields...)
		r := run(t, cluster["NODE_EXEC"], append([]string{node, client}, args...)...)
		if !strings.Contains(r.stdout, "type 65") || !strings.Contains(r.stdout, c.want) {
			t.Errorf("%s: want a refusal saying %q:\n%s", c.fields, c.want, r)
		} else {
			t.Logf("%s: refused in %s: %s", c.fields, time.Since(start).Round(time.Millisecond), lastLineOf(r.stdout))
		}
		daemonAnswers(t, node)
	}
	run(t, cluster["NODE_EXEC"], node, cluster["PODMAN_HPCD"], "rm", "--socket", cluster["PODMAN_HPCD_SOCKET"], "--job", "999003")
	checkNothingLeft(t, node)
}

// hangingFUSE mounts at dir, in node's mount namespace (the daemon's), a
// FUSE file system of the test user's whose server never reads a request,
// and returns dir; it is unmounted at the test's end. The mount is what fusermount3 makes for a user (user_id
// theirs, no allow_other), made here by root: this VM's /dev/fuse is
// root's only.
func hangingFUSE(t *testing.T, node, dir string) string {
	t.Helper()
	ids := strings.Fields(asUser(t, "sh", "-c", "id -u; id -g").stdout)
	return mountHangingFUSE(t, node, dir, ids[0], ids[1], "")
}

// mountHangingFUSE mounts at dir, in node's mount namespace, a FUSE file
// system of uid:gid (with extra options) whose server never reads a
// request; it is unmounted at the test's end.
func mountHangingFUSE(t *testing.T, node, dir, uid, gid, extra string) string {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skip("no /dev/fuse")
	}
	c := exec.Command(cluster["NODE_EXEC"], node, "python3", "-c", `import ctypes, os, sys, time
fd = os.open("/dev/fuse", os.O_RDWR)
libc = ctypes.CDLL(None, use_errno=True)
opts = "fd=%d,rootmode=40000,user_id=%s,group_id=%s%s" % (fd, sys.argv[2], sys.argv[3], sys.argv[4])
if libc.mount(b"hang", sys.argv[1].encode(), b"fuse.hang", 2 | 4, opts.encode()) != 0:  # nosuid, nodev
    sys.exit("mount: " + os.strerror(ctypes.get_errno()))
time.sleep(600)  # holds /dev/fuse, never reads it
`, dir, uid, gid, extra)
	c.Stderr = os.Stderr
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command(cluster["NODE_EXEC"], node, "umount", "-l", dir).Run()
		c.Process.Kill()
		c.Wait()
	})
	for i := 0; i < 100; i++ {
		if r := run(t, cluster["NODE_EXEC"], node, "cat", "/proc/self/mountinfo"); strings.Contains(r.stdout, " "+dir+" ") {
			return dir
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the FUSE mount at %s did not appear", dir)
	return ""
}

// A network or FUSE file system of the site's (root's, allow_other) that
// stops answering, mounted below a user's mount source: root looked at the
// mounts below each source to bind them too, and a daemon thread waited on
// the server for as long as it did not answer (outside review,
// 2026-12-06). The step now waits as a bare-metal task on that mount would,
// until it is cancelled, and no thread of the daemon waits on the server.
func TestSecurityHungMountBelowASource(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, fmt.Sprintf("e2e-hungsub-%d", time.Now().UnixNano()))
	mustSucceed(t, asUser(t, "mkdir", "-p", filepath.Join(dir, "src", "mnt")))
	mountHangingFUSE(t, node, filepath.Join(dir, "src", "mnt"), "0", "0", ",allow_other")
	r := asUser(t, "timeout", "15", "srun", "-w", node, "-N1", "-n1", "--container-image="+cluster["SMALL_IMAGE"],
		"--container-mounts="+filepath.Join(dir, "src")+":/data", "true")
	t.Logf("the step (ended by timeout 15 if it waited): exit %d: %s", r.code, lastLineOf(r.String()))
	pid := strings.TrimSpace(onNode(t, node, "", "cat "+cluster["LAB"]+"/run/"+node+"/podman-hpcd.pid").stdout)
	var waiting string
	if !waitFor(10*time.Second, func() bool { // the step's removal, once srun is gone
		waiting = onNode(t, node, "", `for t in /proc/$1/task/*; do w=$(cat "$t/wchan" 2>/dev/null); case $w in *fuse*|request_wait_answer) echo "${t##*/}:$w";; esac; done`, pid).stdout
		return strings.TrimSpace(waiting) == ""
	}) {
		t.Fatalf("daemon threads wait on the hung file system: %s", waiting)
	}
	daemonAnswers(t, node)
}

// daemonAnswers fails the test unless node's daemon answers status within
// three seconds.
func daemonAnswers(t *testing.T, node string) {
	t.Helper()
	start := time.Now()
	r := run(t, cluster["NODE_EXEC"], node, "timeout", "3", cluster["PODMAN_HPCD"], "status", "--socket", cluster["PODMAN_HPCD_SOCKET"])
	if r.code != 0 {
		t.Fatalf("the daemon did not answer status within 3 s (%s):\n%s", time.Since(start), r)
	}
}

func lastLineOf(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

func limitOut(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// A FIFO where the user's registry credentials are looked for
// (REGISTRY_AUTH_FILE, auth.json under XDG_RUNTIME_DIR) held slurmstepd,
// and the node in COMPLETING, until a writer came: it is skipped as any
// file that is not a regular one. The reference is pinned (a digest), so
// that srun's own resolve, the user's process, does not read it first.
func TestSecurityAuthFileFIFO(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, fmt.Sprintf("e2e-auth-fifo-%d", time.Now().UnixNano()))
	mustSucceed(t, asUser(t, "sh", "-c", `mkdir -p "$1/xdg/containers" && mkfifo "$1/fifo" "$1/xdg/containers/auth.json"`, "sh", dir))
	digest := strings.TrimSpace(run(t, "skopeo", "inspect", "--tls-verify=false", "--format", "{{.Digest}}", "docker://"+cluster["SMALL_IMAGE"]).stdout)
	if !strings.HasPrefix(digest, "sha256:") {
		t.Fatalf("skopeo gave %q", digest)
	}
	pinned := cluster["SMALL_IMAGE"] + "@" + digest
	for _, env := range []string{"REGISTRY_AUTH_FILE=" + dir + "/fifo", "XDG_RUNTIME_DIR=" + dir + "/xdg"} {
		start := time.Now()
		r := asUser(t, "env", env, "timeout", "60", "srun", "-N1", "-w", node, "--container-image="+pinned, "true")
		mustSucceed(t, r)
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s: the step took %s", env, d)
		}
	}
	checkNothingLeft(t, node)
}

// An OCI layout past max_image_size (here one blob of 3 GiB, sparse)
// fails the step at once with the reason; the helper streaming it, which
// waited on the daemon forever, is gone, and nothing is left in the cache.
func TestSecurityLayoutPastTheLimit(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, fmt.Sprintf("e2e-big-layout-%d", time.Now().UnixNano()))
	layout := filepath.Join(dir, "big")
	mustSucceed(t, run(t, "cp", "-r", "../../build/images/small", layout))
	mustSucceed(t, run(t, "truncate", "-s", "3G", filepath.Join(layout, "blobs", "sha256", strings.Repeat("1", 64))))
	mustSucceed(t, run(t, "chown", "-R", cluster["TEST_USER"], layout))
	start := time.Now()
	r := asUser(t, "timeout", "120", "srun", "-N1", "-w", node, "--container-image=oci:"+layout+":latest", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "too large") {
		t.Errorf("the layout past the limit: want a refusal saying too large (%s):\n%s", time.Since(start), r)
	}
	// The copy is removed a moment after the step's end.
	var left string
	for i := 0; i < 50; i++ {
		left = onNode(t, node, "", `pgrep -u $1 -f podman-hpc-asuser; find $2/nodelocal/images/tmp -mindepth 1 2>/dev/null`, cluster["TEST_USER"], cluster["LAB"]).stdout
		if strings.TrimSpace(left) == "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.TrimSpace(left) != "" {
		t.Errorf("left behind:\n%s", left)
	}
	checkNothingLeft(t, node)
}

// An image whose /home is a symlink into /.podman-hpc (the daemon's, where
// the init lives) had the user's home mounted there, as the daemon's own
// mounts (the home, /tmp) were not resolved in the image first. The step is
// refused with the symlink named, and nothing is left.
func TestSecurityImageSymlinkSteersNoDaemonMount(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	// The image holds /.podman-hpc itself, so that the mount point can
	// be made through the symlink.
	img := imageWithTree(t, func(tree string) {
		os.Mkdir(filepath.Join(tree, ".podman-hpc"), 0o755)
		if err := os.Symlink("/.podman-hpc", filepath.Join(tree, "home")); err != nil {
			t.Fatal(err)
		}
	})
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "--container-mount-home", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "leads to /.podman-hpc") {
		t.Errorf("the image steered the home mount into /.podman-hpc:\n%s", r)
	}
	checkNothingLeft(t, node)
}
