//go:build e2e

package e2e

import (
	"regexp"
	"strings"
	"testing"
)

var pyxisOptions = []string{
	"--container-image", "--container-mounts", "--container-workdir", "--container-env",
	"--container-writable", "--container-readonly", "--container-mount-home",
	"--no-container-mount-home", "--container-name", "--container-save",
	"--container-entrypoint", "--no-container-entrypoint", "--container-remap-root",
	"--no-container-remap-root", "--container-entrypoint-log", "--container-unshare",
}

// The plugin is loaded by srun, salloc and sbatch: their help lists pyxis's options.
func TestOptionsInHelp(t *testing.T) {
	for _, cmd := range []string{"srun", "sbatch", "salloc"} {
		r := run(t, cmd, "--help")
		mustSucceed(t, r)
		for _, opt := range pyxisOptions {
			if !regexp.MustCompile(`(?m)^\s+` + opt + `[=\s]`).MatchString(r.stdout) {
				t.Errorf("%s --help lacks %s", cmd, opt)
			}
		}
	}
}

// A bad option value is refused by srun before anything starts, with the cause.
func TestBadMountRefusedBySrun(t *testing.T) {
	r := srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts=/tmp:relative", "true")
	if r.code == 0 {
		t.Fatal("srun accepted a relative mount destination")
	}
	want := `podman-hpc: --container-mounts: destination "relative" is not an absolute path`
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
}

// An option we do not implement yet fails loudly, never silently.
func TestUnsupportedOptionFailsLoudly(t *testing.T) {
	r := srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-name=x", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "podman-hpc: --container-name is not supported yet") {
		t.Errorf("want a clear refusal:\n%s", r)
	}
}

// srun --container-image reaches the node's daemon with the step's identity;
// until containers exist the daemon refuses with a clear one-line error, and
// the step fails.
func TestImageRequestReachesDaemon(t *testing.T) {
	node := nodes()[0]
	r := srun(t, "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "true")
	if r.code == 0 {
		t.Fatalf("step succeeded without containers: %s", r)
	}
	if !strings.Contains(r.stderr, "podman-hpc: --container-image="+cluster["SMALL_IMAGE"]+": podman-hpcd") {
		t.Errorf("srun stderr lacks the daemon's answer:\n%s", r.stderr)
	}
	if log := daemonLog(t, node); !strings.Contains(log, "image="+cluster["SMALL_IMAGE"]) || !strings.Contains(log, "peer_uid=0") {
		t.Errorf("%s's daemon log shows no request from slurmstepd:\n%s", node, log)
	}
}

// The environment form of an option (ours or pyxis's) works like the flag.
func TestImageFromPyxisEnvironment(t *testing.T) {
	node := nodes()[0]
	r := run(t, "env", "PYXIS_CONTAINER_IMAGE="+cluster["SMALL_IMAGE"], "srun", "-N1", "-w", node, "true")
	if r.code == 0 || !strings.Contains(r.stderr, "podman-hpc: --container-image="+cluster["SMALL_IMAGE"]) {
		t.Errorf("PYXIS_CONTAINER_IMAGE was not used:\n%s", r)
	}
}

// #SBATCH --container-image is accepted by sbatch and reaches the batch step
// on the node, in its daemon's log.
func TestSbatchContainerImage(t *testing.T) {
	script := "#!/bin/bash\n#SBATCH --container-image=" + cluster["SMALL_IMAGE"] + "\n#SBATCH -N1\necho batch-ran\n"
	id, out := sbatch(t, script)
	found := false
	for _, n := range nodes() {
		log := daemonLog(t, n)
		if strings.Contains(log, "job="+id+" ") && strings.Contains(log, "image="+cluster["SMALL_IMAGE"]) {
			found = true
		}
	}
	if !found {
		t.Errorf("job %s: no node's daemon saw the batch step's image request; job output:\n%s", id, out)
	}
}

// When the node's daemon is down, srun says so in one line, with the fix.
func TestDaemonDownIsAClearError(t *testing.T) {
	requireRoot(t)
	node := nodes()[len(nodes())-1]
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node))
	t.Cleanup(func() { mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node)) })
	r := srun(t, "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "true")
	if r.code == 0 {
		t.Fatal("step succeeded with no daemon")
	}
	want := "podman-hpc: couldn't reach the node daemon at " + cluster["PODMAN_HPCD_SOCKET"]
	if !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "podman-hpcd.socket") {
		t.Errorf("stderr lacks %q and the fix:\n%s", want, r.stderr)
	}
}
