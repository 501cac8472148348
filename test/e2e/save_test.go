//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// --container-save writes the container's filesystem, with the step's
// writes, as a squashfs the user owns, usable as an image; an existing file
// is replaced; a path the user cannot write stays unwritten. The user
// installs as root inside (remap-root), the usual way.
func TestContainerSave(t *testing.T) {
	out := inHome(t, "e2e-saved") + ".sqfs"
	t.Cleanup(func() { os.Remove(out) })
	for round, word := range []string{"first", "second"} {
		r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-writable", "--container-remap-root",
			"--container-save="+out, "sh", "-c", "echo "+word+" >/saved-file")
		mustSucceed(t, r)
		fi, err := os.Stat(out)
		if err != nil {
			t.Fatalf("round %d: no saved file: %v", round, err)
		}
		if uid := fileUID(fi); uid != strings.TrimSpace(asUser(t, "id", "-u").stdout) {
			t.Errorf("saved file owned by uid %s, not the user", uid)
		}
		r = asUser(t, "srun", "-N1", "--container-image="+out, "cat", "/saved-file", "/etc/os-release")
		mustSucceed(t, r)
		if !strings.HasPrefix(r.stdout, word+"\n") || !strings.Contains(r.stdout, "ID=podman-hpc-small") {
			t.Errorf("round %d: the saved image holds %q", round, r.stdout)
		}
	}
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-save=/root/nope.sqfs", "true")
	if _, err := os.Stat("/root/nope.sqfs"); err == nil {
		os.Remove("/root/nope.sqfs")
		t.Errorf("saved into /root as the user:\n%s", r)
	}
}

// A relative --container-save path, as a flag or PYXIS_CONTAINER_SAVE, is
// the job's directory's; a directory is refused in srun before any job; a
// save that fails says why in srun's output.
func TestContainerSavePaths(t *testing.T) {
	img := cluster["SMALL_IMAGE"]
	dir := userDir(t, "e2e-save-paths")
	mustSucceed(t, asUserIn(t, dir, "srun", "-N1", "--container-image="+img, "--container-save=flag.sqsh", "true"))
	mustSucceed(t, asUserIn(t, dir, "env", "PYXIS_CONTAINER_SAVE=var.sqsh", "srun", "-N1", "--container-image="+img, "true"))
	for _, f := range []string{"flag.sqsh", "var.sqsh"} {
		r := asUser(t, "srun", "-N1", "--container-image="+dir+"/"+f, "grep", "^ID=", "/etc/os-release")
		mustSucceed(t, r)
		if r.stdout != "ID=podman-hpc-small\n" {
			t.Errorf("%s: %s", f, r)
		}
	}
	for _, p := range []string{"/tmp/", dir} {
		r := asUser(t, "srun", "-N1", "--container-image="+img, "--container-save="+p, "true")
		mustFailWith(t, r, "--container-save: \""+p+"\" is a directory")
		if strings.Contains(r.stderr, "slurmstepd") {
			t.Errorf("%s: a job ran:\n%s", p, r)
		}
	}
	r := asUser(t, "srun", "-N1", "--container-image="+img, "--container-save=/root/nope.sqfs", "true")
	if !strings.Contains(r.stderr, "--container-save=/root/nope.sqfs: --container-save: open /root/nope.sqfs: permission denied") {
		t.Errorf("a failed save does not say why:\n%s", r)
	}
	checkNothingLeft(t, nodes()[0])
}

// A save holds every file as root's, as pyxis's (enroot export's) do, and
// its package manager works again: apt and dnf install in the image saved
// after an install, as fake root, with nothing of the image's other owners
// (_apt's lists) left to copy up.
func TestContainerSaveInstallsAgain(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Skipf("%q not found in PATH", "unsquashfs")
	}
	dir := userDir(t, "e2e-save-install")
	for _, c := range []struct{ name, image, install, again, want string }{
		{"apt", cluster["APT_IMAGE"], aptInstall, "apt-get -q update && apt-get -q install --reinstall -y podman-hpc-hello && podman-hpc-hello", "Setting up podman-hpc-hello (1.0) ...\nhello from podman-hpc-hello\n"},
		{"dnf", cluster["RPM_IMAGE"], dnfInstall, "rpm -e podman-hpc-hello && " + dnfInstall + " && " + rpmCheck, rpmWant},
	} {
		t.Run(c.name, func(t *testing.T) {
			out := filepath.Join(dir, c.name+".sqsh")
			mustSucceed(t, asUser(t, "srun", "-N1", "--container-image="+c.image, "--container-remap-root", "--container-writable",
				"--container-save="+out, "sh", "-c", c.install))
			list, err := exec.Command("unsquashfs", "-lls", out).CombinedOutput()
			if err != nil {
				t.Fatalf("unsquashfs: %v\n%s", err, list)
			}
			for _, line := range strings.Split(string(list), "\n") {
				if strings.Contains(line, "squashfs-root") && !strings.Contains(line, " root/root ") {
					t.Errorf("not root's in the saved image: %s", line)
				}
			}
			r := asUser(t, "srun", "-N1", "--container-image="+out, "--container-remap-root", "--container-writable",
				"sh", "-c", "podman-hpc-hello && "+c.again)
			mustSucceed(t, r)
			// dpkg ends its progress lines with \r.
			if !strings.HasSuffix(strings.ReplaceAll(r.stdout, "\r", ""), c.want) {
				t.Errorf("the saved image, again: want it to end with %q:\n%s", c.want, r)
			}
			if m := aptComplaint.FindAllString(r.stdout+r.stderr, -1); len(m) > 0 || strings.Contains(r.stdout+r.stderr, "error:") {
				t.Errorf("the package manager complained:\n%s", r)
			}
		})
	}
	checkNothingLeft(t, nodes()[0])
}

// An absolute-path save of a writable container that the step wrote into
// (as the job user, without remap-root): it exited 2 when the user could
// not write the root ("cannot create /saved: Permission denied", dash's
// exit status), which a writable root of the user's fixes.
func TestContainerSaveWritable(t *testing.T) {
	dir := userDir(t, "e2e-save-writable")
	out := dir + "/w.sqsh"
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["MPI_IMAGE"], "--container-writable", "--container-save="+out,
		"sh", "-c", "echo written >/saved")
	mustSucceed(t, r)
	r = asUser(t, "srun", "-N1", "--container-image="+out, "cat", "/saved")
	mustSucceed(t, r)
	if r.stdout != "written\n" {
		t.Errorf("the saved image holds %q", r.stdout)
	}
}

// A save that fails once the tasks are done fails the step: srun exits
// non-zero and prints the cause (pyxis leaves both to the node's log). The
// step's directory is writable when it starts, and the task makes it
// read-only: the daemon writes the file as the user. A task's own non-zero
// status stays its own.
func TestContainerSaveFailureFailsTheStep(t *testing.T) {
	dir := userDir(t, "e2e-save-fails")
	sub := dir + "/sub"
	mustSucceed(t, asUser(t, "mkdir", sub))
	img := cluster["SMALL_IMAGE"]
	for _, c := range []struct {
		task string
		code int
	}{{"chmod 0500 " + sub, 1}, {"chmod 0500 " + sub + "; exit 3", 3}} {
		mustSucceed(t, asUser(t, "chmod", "0700", sub))
		r := asUser(t, "srun", "-N1", "--container-image="+img, "--container-mounts="+dir+":"+dir,
			"--container-save="+sub+"/out.sqsh", "sh", "-c", c.task)
		if r.code != c.code {
			t.Errorf("%q: srun exited %d, want %d:\n%s", c.task, r.code, c.code, r)
		}
		want := "--container-save=" + sub + "/out.sqsh: "
		if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "permission denied") {
			t.Errorf("%q: srun does not say why the save failed (%q):\n%s", c.task, want, r)
		}
	}
	// A batch script's save, likewise: the job's exit code.
	mustSucceed(t, asUser(t, "chmod", "0700", sub))
	id, _ := sbatchAsUser(t, dir, "#!/bin/sh\nchmod 0500 "+sub+"\n", "-N1", "--container-image="+img,
		"--container-mounts="+dir+":"+dir, "--container-save="+sub+"/batch.sqsh")
	waitJob(t, id)
	r := run(t, "scontrol", "show", "job", id)
	if !strings.Contains(r.stdout, "ExitCode=1:0") {
		t.Errorf("the batch job's failed save left its exit code alone:\n%s", r.stdout)
	}
	checkNothingLeft(t, nodes()[0])
}

// The save comes once every task of the node has ended, whichever ends
// last, and before srun returns: each of three tasks writes its file at its
// own time, and the saved image holds all three.
func TestContainerSaveWaitsForEveryTask(t *testing.T) {
	dir := userDir(t, "e2e-save-tasks")
	out := dir + "/tasks.sqsh"
	r := asUser(t, "srun", "-N1", "-n3", "--container-image="+cluster["SMALL_IMAGE"], "--container-writable",
		"--container-save="+out, "sh", "-c", `sleep $((SLURM_PROCID * 2 % 3)).$SLURM_PROCID; echo $SLURM_PROCID >/task-$SLURM_PROCID`)
	mustSucceed(t, r)
	r = asUser(t, "srun", "-N1", "--container-image="+out, "sh", "-c", "cat /task-*")
	mustSucceed(t, r)
	if r.stdout != "0\n1\n2\n" {
		t.Errorf("the saved image holds %q of the tasks' files, want all three", r.stdout)
	}
}

// A task that kills its parent (the small one that waits for its program on
// the saving node) does not lose the save: slurmstepd has it done at the
// step's end, as before.
func TestContainerSaveWithoutTheTasksParent(t *testing.T) {
	dir := userDir(t, "e2e-save-orphan")
	out := dir + "/orphan.sqsh"
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-writable",
		"--container-save="+out, "sh", "-c", "echo kept >/f; kill -9 $PPID")
	if r.code == 0 {
		t.Errorf("srun did not see the task's parent killed:\n%s", r)
	}
	r = asUser(t, "srun", "-N1", "--container-image="+out, "cat", "/f")
	mustSucceed(t, r)
	if r.stdout != "kept\n" {
		t.Errorf("the saved image holds %q", r.stdout)
	}
	checkNothingLeft(t, nodes()[0])
}

// A save's squashfs is made on the cache's disk (cache_dir/tmp), never in
// state_dir, the tmpfs under /run that slurmd and munge need too: a user's
// save of a large container once filled it. The step writes data that
// does not compress, so mksquashfs writes for a while; a watcher on the
// node looks for the temporary file in both places meanwhile.
func TestContainerSaveScratchOnCacheDisk(t *testing.T) {
	node := nodes()[0]
	local := cluster["LAB"] + "/nodelocal"
	stop := filepath.Join(t.TempDir(), "stop")
	seen := make(chan result, 1)
	go func() {
		seen <- onNode(t, node, "", `while [ ! -e "$3" ]; do
			ls "$1" | grep -q '^save-' && echo state_dir
			ls "$2" | grep -q '^save-' && echo cache
			sleep 0.02
		done`, local+"/state", local+"/images/tmp", stop)
	}()
	out := filepath.Join(userDir(t, "e2e-save-scratch"), "big.sqfs")
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "--container-writable",
		"--container-save="+out, "busybox", "dd", "if=/dev/urandom", "of=/big", "bs=1M", "count=192")
	os.WriteFile(stop, nil, 0o644)
	w := <-seen
	mustSucceed(t, r)
	if fi, err := os.Stat(out); err != nil || fi.Size() < 192<<20 {
		t.Fatalf("saved file: %v (want one of 192M or more)", err)
	}
	if strings.Contains(w.stdout, "state_dir") {
		t.Errorf("the save's temporary file was in state_dir")
	}
	if !strings.Contains(w.stdout, "cache") {
		t.Errorf("the save's temporary file was never seen in cache_dir/tmp (watcher: %s)", w)
	}
	if left := onNode(t, node, "", `ls "$1" "$2" | grep -c '^save-' || true`, local+"/state", local+"/images/tmp"); strings.TrimSpace(left.stdout) != "0" {
		t.Errorf("save files left: %s", left)
	}
}

// A save into a file another user planted for it (one the user may write,
// 0666) would keep that file's owner, who would then read the user's image:
// it is refused before anything is written, for --container-save and for
// podman-hpcd import -f alike.
func TestContainerSaveRefusesAnotherUsersFile(t *testing.T) {
	requireRoot(t)
	dir := readableTempDir(t)
	planted := filepath.Join(dir, "planted.sqsh")
	if err := os.WriteFile(planted, []byte("the planter's"), 0o666); err != nil {
		t.Fatal(err)
	}
	os.Chmod(planted, 0o666)
	if err := os.Chown(planted, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-save="+planted, "true")
	if r.code == 0 || !strings.Contains(r.stderr, "is another user's file (uid 65534), which would keep its owner") {
		t.Errorf("a save into another user's file:\n%s", r)
	}
	r = clientAsUser(t, nodes()[0], dir, userHome(t), "import", "-f", "-o", planted, cluster["SMALL_IMAGE"])
	if r.code == 0 || !strings.Contains(r.stderr, "is another user's file (uid 65534)") {
		t.Errorf("an import -f into another user's file:\n%s", r)
	}
	if b, _ := os.ReadFile(planted); string(b) != "the planter's" {
		t.Errorf("the planted file was written: %q", b)
	}
}
