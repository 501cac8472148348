//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// readyContainers are the containers the node's daemon gave job's steps, by
// step: its "container ready" lines.
func readyContainers(t *testing.T, node, job string) map[string]string {
	t.Helper()
	re := regexp.MustCompile(`msg="container ready".* job=` + job + ` step=(\d+) .*container=(\S+)`)
	out := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(daemonLog(t, node), -1) {
		out[m[1]] = m[2]
	}
	return out
}

// A batch script's steps with one image and the same options share the
// node's container: the second step's container is the first's, and sees
// its /tmp, as bare-metal steps share the node's. A step a fresh container
// would show differently gets its own: a writable root, other mounts,
// another HOME (the variables hooks read), the image's entrypoint, a save,
// a SIF (its environment scripts run as an entrypoint).
// The kept container's init is in the job's cgroup, not a step's (it
// outlives its first step), and nothing outlives the job.
func TestReuseSteps(t *testing.T) {
	// A kept container waits in the job's cgroup: none without cgroup tracking.
	requireCgroupTracking(t)
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, "e2e-reuse")
	img := cluster["SMALL_IMAGE"]
	run := "srun --container-image=" + img + " "
	// A SIF's environment scripts run before its init, as an entrypoint.
	sif := "srun --container-image=" + sifFrom(t, dir, "reuse", img, nil) + " "
	script := "#!/bin/sh\n" +
		run + "sh -c 'echo kept >/tmp/mark'\n" + // 0: made, kept
		run + "cat /tmp/mark\n" + // 1: joins 0
		run + "--container-writable sh -c 'cat /tmp/mark 2>/dev/null || echo fresh-writable'\n" + // 2
		run + "--container-mounts=" + dir + ":/d sh -c 'cat /tmp/mark 2>/dev/null || echo fresh-mounts'\n" + // 3
		"HOME=" + dir + " " + run + "sh -c 'cat /tmp/mark 2>/dev/null || echo fresh-home'\n" + // 4
		run + "--container-entrypoint sh -c 'cat /tmp/mark 2>/dev/null || echo fresh-entrypoint'\n" + // 5
		run + "--container-save=" + dir + "/saved.sqsh sh -c 'cat /tmp/mark 2>/dev/null || echo fresh-save'\n" + // 6
		"touch " + dir + "/held; while [ ! -e " + dir + "/go ]; do sleep 0.1; done\n" +
		run + "cat /tmp/mark\n" + // 7: joins 0 again
		sif + "sh -c 'echo sif >/tmp/sifmark'\n" + // 8
		sif + "sh -c 'cat /tmp/sifmark 2>/dev/null || echo fresh-sif'\n" // 9
	job, out := sbatchAsUser(t, dir, script, "-N1", "-w", node)
	waitFile(t, dir+"/held", job)

	// While the job runs: step 0's container is kept, in the job's cgroup.
	bundle := bundleOf(t, node, "phpc-"+job+"-0")
	pid := strings.TrimSpace(onNode(t, node, "", `cat "$1"/init.pid`, bundle).stdout)
	conf, _ := os.ReadFile(cluster["LAB"] + "/etc/slurm.conf")
	if !strings.Contains(string(conf), "ProctrackType=proctrack/cgroup") {
		t.Log("the cluster runs without proctrack/cgroup: the init's cgroup is not checked")
	} else if cg := freezerOf(t, node, pid); !strings.HasSuffix(cg, "/job_"+job) {
		t.Errorf("the kept container's init (pid %s) is in freezer cgroup %q, not job %s's", pid, cg, job)
	}
	os.WriteFile(dir+"/go", nil, 0o644)
	waitJob(t, job)

	b, _ := os.ReadFile(out)
	var got []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "srun: ") { // "step creation temporarily disabled"
			got = append(got, l)
		}
	}
	want := []string{"kept", "fresh-writable", "fresh-mounts", "fresh-home", "fresh-entrypoint", "fresh-save", "kept", "fresh-sif"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("steps printed %q, want %q\n%s", got, want, b)
	}
	ids := readyContainers(t, node, job)
	for step, want := range map[string]string{"0": "0", "1": "0", "2": "2", "3": "3", "4": "4", "5": "5", "6": "6", "7": "0", "8": "8", "9": "9"} {
		if ids[step] != "phpc-"+job+"-"+want {
			t.Errorf("step %s ran in container %q, want phpc-%s-%s (all: %v)", step, ids[step], job, want, ids)
		}
	}
	checkNothingLeft(t, node)
}

// A kept container ends reuse_idle after its last step, inside its job:
// the job's next step then gets a new one.
func TestReuseIdleEnds(t *testing.T) {
	// A kept container waits in the job's cgroup: none without cgroup tracking.
	requireCgroupTracking(t)
	requireRoot(t)
	withConfigLine(t, "reuse_idle = 2s")
	node := nodes()[0]
	dir := userDir(t, "e2e-reuse-idle")
	run := "srun --container-image=" + cluster["SMALL_IMAGE"] + " true\n"
	script := "#!/bin/sh\n" + run + run + "sleep 5\n" + run
	job, _ := sbatchAsUser(t, dir, script, "-N1", "-w", node)
	waitJob(t, job)
	ids := readyContainers(t, node, job)
	first := "phpc-" + job + "-0"
	if ids["0"] != first || ids["1"] != first || ids["2"] != "phpc-"+job+"-2" {
		t.Errorf("containers by step %v: want 0 and 1 to share %s, and 2 a new one after reuse_idle", ids, first)
	}
	if !regexp.MustCompile(`msg="kept container removed: idle" container=` + first + ` job=` + job).MatchString(daemonLog(t, node)) {
		t.Errorf("the daemon did not log %s's end after reuse_idle", first)
	}
	checkNothingLeft(t, node)
}

// reuse_idle = 0: every step has a container of its own, in its step's
// cgroup, as before reuse.
func TestReuseOff(t *testing.T) {
	requireRoot(t)
	withConfigLine(t, "reuse_idle = 0")
	node := nodes()[0]
	dir := userDir(t, "e2e-reuse-off")
	run := "srun --container-image=" + cluster["SMALL_IMAGE"] + " true\n"
	job, _ := sbatchAsUser(t, dir, "#!/bin/sh\n"+run+run, "-N1", "-w", node)
	waitJob(t, job)
	if ids := readyContainers(t, node, job); ids["0"] != "phpc-"+job+"-0" || ids["1"] != "phpc-"+job+"-1" {
		t.Errorf("containers by step %v: want one each", ids)
	}
	checkNothingLeft(t, node)
}

// A kept container is its job's and user's alone: another user's job on the
// node, with the same image and options, gets its own; and root's steps of
// another job too.
func TestReuseOnlyOwnJob(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, "e2e-reuse-own")
	img := cluster["SMALL_IMAGE"]
	script := "#!/bin/sh\nsrun --container-image=" + img + " true\ntouch " + dir + "/held\n" +
		"while [ ! -e " + dir + "/go ]; do sleep 0.1; done\n"
	job, _ := sbatchAsUser(t, dir, script, "-N1", "-w", node)
	waitFile(t, dir+"/held", job)
	other := srun(t, "-N1", "-w", node, "--container-image="+img, "true")
	os.WriteFile(filepath.Join(dir, "go"), nil, 0o644)
	mustSucceed(t, other)
	waitJob(t, job)
	log := daemonLog(t, node)
	for _, m := range regexp.MustCompile(`msg="container ready".* job=(\d+) step=0 .*container=(\S+)`).FindAllStringSubmatch(log, -1) {
		if m[1] != job && m[2] == "phpc-"+job+"-0" {
			t.Errorf("job %s ran in job %s's container", m[1], job)
		}
	}
	checkNothingLeft(t, node)
}

// A restarted daemon (an upgrade) adopts a kept container as kept: the job's
// next step joins it, and it still ends with the job.
func TestReuseAcrossRestart(t *testing.T) {
	// A kept container waits in the job's cgroup: none without cgroup tracking.
	requireCgroupTracking(t)
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, "e2e-reuse-restart")
	run := "srun --container-image=" + cluster["SMALL_IMAGE"] + " "
	script := "#!/bin/sh\n" + run + "sh -c 'echo kept >/tmp/mark'\ntouch held\n" +
		"while [ ! -e restarted ]; do sleep 0.1; done\n" + run + "cat /tmp/mark\n"
	job, out := sbatchAsUser(t, dir, script, "-N1", "-w", node)
	waitFile(t, dir+"/held", job)
	mustSucceed(t, runEnv(t, nil, cluster["NODE_DAEMON"], "stop", node))
	mustSucceed(t, runEnv(t, nil, cluster["NODE_DAEMON"], "start", node))
	adopted := false
	for deadline := time.Now().Add(10 * time.Second); !adopted && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		adopted = regexp.MustCompile(`container adopted from the previous daemon.*phpc-` + job + `-0`).MatchString(daemonLog(t, node))
	}
	if !adopted {
		t.Errorf("the new daemon did not adopt phpc-%s-0", job)
	}
	os.WriteFile(filepath.Join(dir, "restarted"), nil, 0o644)
	waitJob(t, job)
	if b, _ := os.ReadFile(out); strings.TrimSpace(string(b)) != "kept" {
		t.Errorf("the step after the restart printed %q, want the kept container's /tmp", b)
	}
	if ids := readyContainers(t, node, job); ids["1"] != "phpc-"+job+"-0" {
		t.Errorf("step 1 ran in %q, not the adopted phpc-%s-0", ids["1"], job)
	}
	checkNothingLeft(t, node)
}

// An MPI step under mpi/pmix has PMIx directories of its own, which a fresh
// container binds: it gets its own container, and the job's plain steps
// around it share theirs.
func TestReuseNotForPMIxSteps(t *testing.T) {
	// A kept container waits in the job's cgroup: none without cgroup tracking.
	requireCgroupTracking(t)
	requireRoot(t)
	node := nodes()[0]
	run := "srun -N1 --container-image=" + cluster["MPI_IMAGE"] + " "
	script := "#!/bin/sh\n" + run + "true\n" + run + "--mpi=pmix true\n" + run + "true\n"
	job, out := sbatch(t, script, "-N1", "-w", node)
	ids := readyContainers(t, node, job)
	if ids["0"] != "phpc-"+job+"-0" || ids["1"] != "phpc-"+job+"-1" || ids["2"] != "phpc-"+job+"-0" {
		t.Errorf("containers by step %v: want the pmix step 1 in its own, 0 and 2 sharing one\n%s", ids, out)
	}
	checkNothingLeft(t, node)
}
