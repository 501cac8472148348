//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test cluster's helper_timeout (test/cluster/up.sh).
const helperTimeout = 20 * time.Second

// hostileHome is a home of the test user's whose podman storage holds
// image name, and whose storage.conf names, as a user may, a
// mount_program of theirs that starts a background process and never ends
// (both carry marker in their argv). Its layer has no tar-split, so that
// podman save mounts it, running the program. It is bound over the user's
// home on node only (in that node's mount namespace), where the daemon's
// podman save finds it: the host's home, which other test clusters share,
// is left alone.
func hostileHome(t *testing.T, node, name, marker string) {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Skipf("%q not found in PATH", "podman")
	}
	home, err := os.MkdirTemp("", "phpc-hostile-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	conf := filepath.Join(home, ".config", "containers", "storage.conf")
	os.MkdirAll(filepath.Dir(conf), 0o755)
	base := fmt.Sprintf("[storage]\ndriver = \"overlay\"\ngraphroot = %q\nrunroot = %q\n", home+"/graph", home+"/run")
	os.WriteFile(conf, []byte(base), 0o644)
	prog := filepath.Join(home, "mount-program")
	os.WriteFile(prog, []byte(fmt.Sprintf("#!/bin/bash\n(exec -a %s-child sleep 1000) &\nexec -a %s-main sleep 1000\n", marker, marker)), 0o755)
	mustSucceed(t, run(t, "chown", "-R", cluster["TEST_USER"]+":", home))
	os.Chmod(home, 0o755)
	podmanBuild(t, home, name)
	layers, _ := filepath.Glob(home + "/graph/overlay-layers/*.tar-split.gz")
	if len(layers) == 0 {
		t.Fatalf("no tar-split in %s/graph/overlay-layers", home)
	}
	for _, l := range layers {
		os.Remove(l)
	}
	os.WriteFile(conf, []byte(base+fmt.Sprintf("[storage.options.overlay]\nmount_program = %q\n", prog)), 0o644)
	mustSucceed(t, run(t, cluster["NODE_EXEC"], node, "mount", "--bind", home, "/home/"+cluster["TEST_USER"]))
	t.Cleanup(func() { run(t, cluster["NODE_EXEC"], node, "umount", "/home/"+cluster["TEST_USER"]) })
	if h := userHome(t); !strings.HasPrefix(h, "/home/") {
		t.Skipf("the test user's home %s is not /home/%s", h, cluster["TEST_USER"])
	}
}

// marked lists the host's processes whose argv holds marker.
func marked(marker string) []string {
	out, _ := exec.Command("pgrep", "-af", marker).Output()
	var l []string
	for _, s := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if s != "" && !strings.Contains(s, "pgrep") {
			l = append(l, s)
		}
	}
	return l
}

// srunInBackground runs srun as the test user, for at most limit; its
// result comes on the channel.
func srunInBackground(limit time.Duration, args ...string) chan result {
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		cmd := exec.CommandContext(ctx, "runuser", append([]string{"-u", cluster["TEST_USER"], "--", "env", "SLURM_CONF=" + cluster["SLURM_CONF"], "srun"}, args...)...)
		// A process group of its own, ended as a whole: what srun signals
		// is its own, never the test's.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 5 * time.Second
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		r := result{stdout: out.String(), stderr: errb.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
		} else if err != nil {
			r.code, r.stderr = -1, r.stderr+err.Error()
		}
		done <- r
	}()
	return done
}

// waitFor polls cond every 100 ms for at most d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// A podman:// image whose user's configuration makes podman run a program
// that never ends: a podman-hpcd pull of it that is interrupted stops it at
// once; through srun, status shows the export meanwhile (to root and to the
// user), the step fails by helper_timeout with the reason, and the program
// and all it started are gone. scancel of such a job ends it within
// seconds, with nothing of podman left and the step's command never run
// (Slurm tells a step nothing before its tasks start: the plugin asks, see
// SECURITY.md).
func TestPodmanHangingHelper(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	marker := fmt.Sprintf("phpc-e2e-hang-%d", time.Now().UnixNano())
	name := fmt.Sprintf("localhost/phpc-e2e-hang-%d:1", time.Now().UnixNano())
	hostileHome(t, node, name, marker)
	t.Cleanup(func() {
		for _, l := range marked(marker) {
			t.Errorf("left running: %s", l)
		}
	})

	// podman-hpcd pull, interrupted: the pull nobody waits for stops.
	pull := exec.Command(cluster["NODE_EXEC"], node, "runuser", "-u", cluster["TEST_USER"], "--", "env", "HOME=/home/"+cluster["TEST_USER"],
		cluster["PODMAN_HPCD"], "pull", "--socket", cluster["PODMAN_HPCD_SOCKET"], "podman://"+name)
	pull.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := pull.Start(); err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, func() bool { return len(marked(marker)) == 2 }) {
		syscall.Kill(-pull.Process.Pid, syscall.SIGKILL)
		pull.Wait()
		t.Fatalf("the mount_program never ran under podman-hpcd pull: %q", marked(marker))
	}
	syscall.Kill(-pull.Process.Pid, syscall.SIGKILL)
	pull.Wait()
	if !waitFor(5*time.Second, func() bool { return len(marked(marker)) == 0 }) {
		t.Errorf("podman-hpcd pull killed: the mount_program's processes run on: %q", marked(marker))
	}

	start := time.Now()
	done := srunInBackground(90*time.Second, "-N1", "-w", node, "--container-image=podman://"+name, "true")
	if !waitFor(30*time.Second, func() bool { return len(marked(marker)) == 2 }) {
		t.Fatalf("the mount_program never ran: %q", marked(marker))
	}
	root := podmanHpcd(t, node, "status")
	user := run(t, cluster["NODE_EXEC"], node, "runuser", "-u", cluster["TEST_USER"], "--",
		cluster["PODMAN_HPCD"], "status", "--socket", cluster["PODMAN_HPCD_SOCKET"])
	for who, r := range map[string]result{"root": root, "the user": user} {
		if !regexp.MustCompile(`podman://` + regexp.QuoteMeta(name) + `\s+` + cluster["TEST_USER"] + `\s+exporting \(podman save as uid \d+\)\s+\d+s`).MatchString(r.stdout) {
			t.Errorf("%s's status does not show the podman save:\n%s", who, r.stdout)
		}
	}
	r := <-done
	took := time.Since(start)
	t.Logf("user sees (after %s): %s", took.Round(time.Second), r.stderr)
	if r.code == 0 || !strings.Contains(r.stderr, "helper_timeout") || !strings.Contains(r.stderr, "podman save ran longer than 20s") {
		t.Errorf("the step: %s", r)
	}
	if took > helperTimeout+20*time.Second {
		t.Errorf("the step took %s, with helper_timeout %s", took, helperTimeout)
	}
	if !waitFor(5*time.Second, func() bool { return len(marked(marker)) == 0 }) {
		t.Errorf("after the step: the mount_program's processes run on: %q", marked(marker))
	}
	checkNothingLeft(t, node)

	// scancel while podman hangs: the job is over at once (the plugin
	// asks squeue while it waits, as Slurm holds a starting step's kill),
	// podman and all it started are gone, and the step's command never
	// runs; before, the job waited for the helper's deadline.
	job := fmt.Sprintf("phpc-e2e-hang-%d", time.Now().UnixNano())
	start = time.Now()
	ran := readableTempDir(t)
	done = srunInBackground(90*time.Second, "-N1", "-w", node, "-J", job, "--container-image=podman://"+name,
		"--container-mounts="+ran+":/t", "touch", "/t/ran")
	if !waitFor(30*time.Second, func() bool { return len(marked(marker)) == 2 }) {
		t.Fatalf("the mount_program never ran the second time")
	}
	id := strings.TrimSpace(run(t, "squeue", "-h", "-n", job, "-o", "%i").stdout)
	if conf, _ := os.ReadFile(cluster["LAB"] + "/etc/slurm.conf"); strings.Contains(string(conf), "ProctrackType=proctrack/cgroup") {
		// What the user's configuration made podman run is the step's:
		// in its cgroup, under its limits (podman save starts there).
		for _, l := range marked(marker) {
			pid, _, _ := strings.Cut(l, " ")
			if cg := freezerOf(t, node, pid); !strings.HasSuffix(cg, "/job_"+id+"/step_0") {
				t.Errorf("the mount_program's process %q is in freezer cgroup %q, not job %s's step 0", l, cg, id)
			}
		}
	}
	cancelled := time.Now()
	mustSucceed(t, run(t, "scancel", id))
	if !waitFor(helperTimeout+20*time.Second, func() bool { return jobEnded(t, id) }) {
		t.Errorf("job %s still not over %s after it started (helper_timeout %s)", id, time.Since(start).Round(time.Second), helperTimeout)
	}
	// Well before the helper's deadline: the plugin asks squeue every 3 s
	// (spank/cancel.c), in every Slurm release the cluster runs.
	if took := time.Since(cancelled); took > helperTimeout/2 {
		t.Errorf("the cancelled job ended %s after scancel, near the helper's deadline (%s)", took.Round(time.Second), helperTimeout)
	}
	t.Logf("the cancelled job ended %s after scancel", time.Since(cancelled).Round(100*time.Millisecond))
	<-done
	if _, err := os.Stat(ran + "/ran"); err == nil {
		t.Error("the cancelled step's command ran")
	}
	if !waitFor(5*time.Second, func() bool { return len(marked(marker)) == 0 }) {
		t.Errorf("after scancel: the mount_program's processes run on: %q", marked(marker))
	}
	checkNothingLeft(t, node)
}

// A user exports one container at a time on a node: more at once are
// refused with the reason, and none leaves a file in state_dir.
func TestExportOneAtATime(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, fmt.Sprintf("e2e-export-bound-%d", time.Now().UnixNano()))
	ready := filepath.Join(dir, "ready")
	// 100 MB that do not compress: each export takes a while.
	r := asUser(t, "sbatch", "--parsable", "-N1", "-w", node, "-o", "/dev/null", "-D", dir, "--wrap",
		"srun --container-image="+cluster["SMALL_IMAGE"]+" --container-name=big --container-writable --container-remap-root sh -c 'head -c 100000000 /dev/urandom >/big' && touch "+ready+" && sleep 120")
	job := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	if r.code != 0 || job == "" {
		t.Fatalf("sbatch: %s", r)
	}
	t.Cleanup(func() { run(t, "scancel", job) })
	if !waitFor(60*time.Second, func() bool { _, err := os.Stat(ready); return err == nil }) {
		t.Fatalf("the named container was not ready in 60s")
	}
	const n = 6
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(cluster["NODE_EXEC"], node, "runuser", "-u", cluster["TEST_USER"], "--", "env", "-C", dir,
				cluster["PODMAN_HPCD"], "export", "--socket", cluster["PODMAN_HPCD_SOCKET"], "--job", job, "-o", fmt.Sprintf("e%d.sqsh", i), "big")
			var out, errb strings.Builder
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			results[i] = result{stdout: out.String(), stderr: errb.String()}
			if ee, ok := err.(*exec.ExitError); ok {
				results[i].code = ee.ExitCode()
			} else if err != nil {
				results[i].code = -1
			}
		}()
	}
	wg.Wait()
	ok, refused := 0, 0
	for i, r := range results {
		switch {
		case r.code == 0:
			ok++
		case strings.Contains(r.stderr, "another export or --container-save of yours is running on this node (one at a time per user)"):
			refused++
			if _, err := os.Stat(filepath.Join(dir, fmt.Sprintf("e%d.sqsh", i))); err == nil {
				t.Errorf("a refused export wrote e%d.sqsh", i)
			}
		default:
			t.Errorf("export %d: %s", i, r)
		}
	}
	t.Logf("%d exports at once: %d written, %d refused", n, ok, refused)
	if ok == 0 || refused == 0 {
		t.Errorf("%d exports at once: %d written, %d refused; want some of each", n, ok, refused)
	}
	left := onNode(t, node, "", `ls "$1" | grep -c -e '^export-' -e '^squash-sandbox-' || true`, cluster["LAB"]+"/nodelocal/state")
	if strings.TrimSpace(left.stdout) != "0" {
		t.Errorf("state_dir holds %s export files after the exports", strings.TrimSpace(left.stdout))
	}
}
