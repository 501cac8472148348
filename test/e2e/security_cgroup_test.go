//go:build e2e

package e2e

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The test cluster tracks steps by cgroup (proctrack/cgroup, cgroup v1):
// its freezer hierarchy is where Slurm counts a step's processes.
func freezerOf(t *testing.T, node, pid string) string {
	t.Helper()
	r := onNode(t, node, "", `sed -n 's/^[0-9]*:freezer://p' /proc/$1/cgroup`, pid)
	return strings.TrimSpace(r.stdout)
}

func requireCgroupTracking(t *testing.T) {
	t.Helper()
	conf, err := os.ReadFile(cluster["LAB"] + "/etc/slurm.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "ProctrackType=proctrack/cgroup") {
		t.Skip("the cluster runs without proctrack/cgroup (PROCTRACK=linuxproc)")
	}
}

// listpids is `scontrol listpids JOB` on node: the pids Slurm tracks.
func listpids(t *testing.T, node, job string) string {
	t.Helper()
	return onNode(t, node, "", `scontrol listpids "$1"`, job).stdout
}

// A container's init is in its step's cgroup: Slurm lists it with the
// step's tasks, and would signal, freeze, limit and account for it with
// them. Before, it lived in the daemon's cgroup, out of the job's reach.
// (A container kept for the job's next steps is in the job's instead:
// TestReuseSteps. A writable one never is.)
func TestSecurityContainerInitInStepCgroup(t *testing.T) {
	requireRoot(t)
	requireCgroupTracking(t)
	node := nodes()[0]
	job, done := stepInBackground(t, node, "sec-cgroup-init", "--container-image="+cluster["SMALL_IMAGE"], "--container-writable", "sleep", "4")
	pid := waitForInit(t, node)
	if cg := freezerOf(t, node, pid); !strings.HasSuffix(cg, "/job_"+job+"/step_0") {
		t.Errorf("the init (pid %s) is in freezer cgroup %q, not job %s's step 0", pid, cg, job)
	}
	if pids := listpids(t, node, job); !regexp.MustCompile(`(?m)^` + pid + `\s+` + job + `\s+0\s`).MatchString(pids) {
		t.Errorf("scontrol listpids does not list the init (pid %s) in step %s.0:\n%s", pid, job, pids)
	}
	mustSucceed(t, <-done)
	checkNothingLeft(t, node)
}

// What the image's entrypoint leaves running is the step's too: Slurm lists
// it, and it is gone when the step ends.
func TestSecurityEntrypointChildInStepCgroup(t *testing.T) {
	requireRoot(t)
	requireCgroupTracking(t)
	node := nodes()[0]
	img := entrypointImage(t, "#!/bin/sh\nsetsid sleep 987654 </dev/null >/dev/null 2>&1 &\nexec \"$@\"\n")
	job, done := stepInBackground(t, node, "sec-cgroup-entrypoint", "--container-image="+img, "--container-entrypoint", "sleep", "4")
	var child string
	for i := 0; i < 50 && child == ""; i++ {
		child = strings.TrimSpace(onNode(t, node, "", `pgrep -x -f 'sleep 987654' | head -1`).stdout)
		time.Sleep(100 * time.Millisecond)
	}
	if child == "" {
		t.Fatal("the entrypoint's child is not running")
	}
	if cg := freezerOf(t, node, child); !strings.HasSuffix(cg, "/job_"+job+"/step_0") {
		t.Errorf("the entrypoint's child is in freezer cgroup %q, not job %s's step 0", cg, job)
	}
	if pids := listpids(t, node, job); !strings.Contains(pids, child+" ") {
		t.Errorf("scontrol listpids does not list the entrypoint's child %s:\n%s", child, pids)
	}
	mustSucceed(t, <-done)
	if left := strings.TrimSpace(onNode(t, node, "", `pgrep -x -f 'sleep 987654' || true`).stdout); left != "" {
		t.Errorf("the entrypoint's child outlived its step: %s", left)
	}
	checkNothingLeft(t, node)
}

// A named container outlives its step, not its job: its init is in the
// job's cgroup, and the job's cgroup is gone with the job (the daemon
// removes what Slurm could not while the init was in it).
func TestSecurityNamedContainerInJobCgroup(t *testing.T) {
	requireRoot(t)
	requireCgroupTracking(t)
	node := nodes()[0]
	dir := readableTempDir(t)
	script := dir + "/job.sh"
	os.WriteFile(script, []byte("#!/bin/sh\n"+
		"srun --container-image="+cluster["SMALL_IMAGE"]+" --container-name=cg true\n"+
		"srun --container-name=cg sleep 3\n"), 0o755)
	r := asUser(t, "sbatch", "--parsable", "-N1", "-w", node, "-o", "/dev/null", "-D", dir, script)
	mustSucceed(t, r)
	job := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	var pid string
	for i := 0; i < 100 && pid == ""; i++ {
		r := onNode(t, node, "", `for p in $(pgrep -f '^/[.]podman-hpc/init'); do grep -qsF "$1/" /proc/$p/mountinfo && echo $p; done`, cluster["LAB"])
		pid = strings.TrimSpace(r.stdout)
		time.Sleep(100 * time.Millisecond)
	}
	if pid == "" || strings.Contains(pid, "\n") {
		t.Fatalf("want one init of this cluster's, got %q", pid)
	}
	cg := freezerOf(t, node, pid)
	if !strings.HasSuffix(cg, "/job_"+job) {
		t.Errorf("the named container's init is in freezer cgroup %q, not job %s's", cg, job)
	}
	for i := 0; i < 300 && !jobEnded(t, job); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	jobCgroup := "/sys/fs/cgroup/freezer" + cg
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(jobCgroup); os.IsNotExist(err) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := os.Stat(jobCgroup); err == nil {
		t.Errorf("the job's cgroup %s is left after the job", jobCgroup)
	}
	checkNothingLeft(t, node)
}

// A task that stops its container's init (SIGSTOP: same user) does not
// keep the step, or the container, past the step's end: Slurm kills the
// step's cgroup, the init with it.
func TestSecurityStoppedInitEndsWithStep(t *testing.T) {
	requireRoot(t)
	requireCgroupTracking(t)
	node := nodes()[0]
	dir := readableTempDir(t)
	// The task stops its own container's init, whose pid the test finds
	// (other clusters' inits, of the same test user, are not to be hit).
	_, done := stepInBackground(t, node, "sec-cgroup-stop", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts="+dir+":/t",
		"sh", "-c", `while [ ! -s /t/pid ]; do sleep 0.1; done; kill -STOP $(cat /t/pid) && echo stopped`)
	pid := waitForInit(t, node)
	os.WriteFile(dir+"/pid", []byte(pid), 0o644)
	select {
	case r := <-done:
		mustSucceed(t, r)
		if !strings.Contains(r.stdout, "stopped") {
			t.Fatalf("the task did not stop its init:\n%s", r)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the step with a stopped init did not end")
	}
	checkNothingLeft(t, node)
}
