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
	r := srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts=/tmp:../outside", "true")
	if r.code == 0 {
		t.Fatal("srun accepted a mount destination that climbs out of the root")
	}
	want := `srun: error: podman-hpc: --container-mounts: destination "../outside" climbs out of the container's root: Invalid cross-device link`
	if !strings.Contains(r.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
	}
}

// srun --container-image reaches the node's daemon from slurmstepd (root),
// with the step's identity, and the daemon logs the container it made.
func TestImageRequestReachesDaemon(t *testing.T) {
	node := nodes()[0]
	r := srun(t, "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "true")
	mustSucceed(t, r)
	log := daemonLog(t, node)
	if !regexp.MustCompile(`msg="container ready" peer_pid=\d+ peer_uid=0 job=\d+ step=0 uid=0 image=` + regexp.QuoteMeta(cluster["SMALL_IMAGE"])).MatchString(log) {
		t.Errorf("%s's daemon log shows no container from slurmstepd:\n%s", node, log)
	}
}

// The environment forms of the options (ours and pyxis's) work like the flags.
func TestOptionsFromEnvironment(t *testing.T) {
	for _, v := range []string{"PYXIS_CONTAINER_IMAGE", "PODMAN_HPC_CONTAINER_IMAGE"} {
		r := run(t, "env", v+"="+cluster["SMALL_IMAGE"], "PYXIS_CONTAINER_WORKDIR=/tmp", "srun", "-N1", "sh", "-c", "pwd; cat /etc/os-release")
		mustSucceed(t, r)
		if !strings.Contains(r.stdout, "ID=podman-hpc-small") || !strings.HasPrefix(r.stdout, "/tmp\n") {
			t.Errorf("%s: not in the image, or workdir not /tmp:\n%s", v, r)
		}
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
