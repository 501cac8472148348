//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// srun --overlap --container-name=JOBID.STEPID attaches to the running
// container of that step, as pyxis users debug a running step: the same
// container (its own /tmp, its mount namespace), for a step of the same job
// only; another job's steps (the same user's, or another user's) are
// refused, as are the modes that would make a container of that name.
func TestAttachToRunningStep(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	job, done := stepInBackground(t, node, "attach-step", "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c",
		`readlink /proc/self/ns/mnt >/tmp/ns; echo mark >/tmp/mark; while [ ! -e /tmp/stop ]; do sleep 0.1; done; echo stopped`)
	ref := job + ".0"
	attach := func(args ...string) result {
		return asUser(t, "srun", append([]string{"--jobid=" + job, "--overlap", "-N1", "-n1", "-w", node}, args...)...)
	}
	defer func() {
		attach("--container-name="+ref, "touch", "/tmp/stop")
		select {
		case r := <-done:
			if !strings.Contains(r.stdout, "stopped") {
				t.Errorf("the step did not end as asked:\n%s", r)
			}
		case <-time.After(30 * time.Second):
			run(t, "scancel", job)
			t.Error("the step did not end")
		}
		checkNothingLeft(t, node)
	}()
	var r result
	for i := 0; i < 100; i++ {
		// The step runs once its tasks do; its container a moment before.
		if r = attach("--container-name="+ref, "sh", "-c", `cat /tmp/mark && readlink /proc/self/ns/mnt && cat /tmp/ns`); r.code == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	mustSucceed(t, r)
	if f := strings.Fields(r.stdout); len(f) != 3 || f[0] != "mark" || f[1] != f[2] {
		t.Errorf("not the step's container (its /tmp and mount namespace): %q", r.stdout)
	}
	r = attach("--container-name="+ref+":exec", "cat", "/tmp/mark")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "mark" {
		t.Errorf("%s:exec:\n%s", ref, r)
	}
	for mode, want := range map[string]string{
		"create":  "--container-name=" + ref + ":create: JOBID.STEPID names a running step's container",
		"no_exec": "--container-name=" + ref + ":no_exec: JOBID.STEPID names a running step's container",
	} {
		if r := attach("--container-name="+ref+":"+mode, "true"); r.code == 0 || !strings.Contains(r.stderr, want) {
			t.Errorf("%s: not refused with %q:\n%s", mode, want, r)
		}
	}
	// The step's container shares the node's network: attaching cannot
	// give it a private one.
	if r := attach("--container-name="+ref, "--container-unshare=net", "true"); r.code == 0 ||
		!strings.Contains(r.stderr, "--container-unshare=net: the container "+ref+" is not in a separate net namespace") {
		t.Errorf("--container-unshare=net on a step's container without one:\n%s", r)
	}
	// Another job of the same user, and another user's job.
	other := asUser(t, "srun", "-N1", "-w", node, "--container-name="+ref, "true")
	nss := run(t, "runuser", "-u", "phpc-nss", "--", "env", "SLURM_CONF="+cluster["SLURM_CONF"], "srun", "-N1", "-w", node, "--container-name="+ref, "true")
	for who, r := range map[string]result{"another job": other, "another user": nss} {
		if r.code == 0 || !strings.Contains(r.stderr, "--container-name="+ref+":auto: names a step of job "+job+", not of this job") {
			t.Errorf("%s attached to job %s's step:\n%s", who, job, r)
		}
	}
	// A step that is not running on the node (here: no such step).
	if r := attach("--container-name="+job+".7", "true"); r.code == 0 || !strings.Contains(r.stderr, "no container of step "+job+".7 runs on this node") {
		t.Errorf("a step that does not run:\n%s", r)
	}
}
