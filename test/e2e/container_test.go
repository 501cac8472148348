//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The image's own files are what the tasks see.
func TestImageOsReleaseInside(t *testing.T) {
	for img, want := range map[string]string{cluster["SMALL_IMAGE"]: "ID=podman-hpc-small", cluster["MPI_IMAGE"]: "ID=debian"} {
		r := srun(t, "-N1", "--container-image="+img, "cat", "/etc/os-release")
		mustSucceed(t, r)
		if !strings.Contains(r.stdout, want) {
			t.Errorf("%s: os-release inside:\n%s", img, r.stdout)
		}
	}
}

// All tasks of a step on a node share one container (one mount namespace);
// tasks on different nodes do not, and none is in the node's own namespace.
func TestOneContainerPerNodePerStep(t *testing.T) {
	r := srun(t, "-N2", "--ntasks-per-node=3", "-l", "--container-image="+cluster["SMALL_IMAGE"],
		"sh", "-c", `echo "$(hostname) $(readlink /proc/self/ns/mnt)"`)
	mustSucceed(t, r)
	byNode := map[string]map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		_, rest, _ := strings.Cut(line, ": ")
		host, ns, _ := strings.Cut(rest, " ")
		if byNode[host] == nil {
			byNode[host] = map[string]bool{}
		}
		byNode[host][ns] = true
	}
	if len(byNode) != 2 {
		t.Fatalf("tasks ran on %d nodes:\n%s", len(byNode), r.stdout)
	}
	seen := map[string]string{}
	for host, nss := range byNode {
		if len(nss) != 1 {
			t.Errorf("%s: tasks in %d mount namespaces, want 1", host, len(nss))
		}
		for ns := range nss {
			if other, dup := seen[ns]; dup {
				t.Errorf("%s and %s share mount namespace %s", host, other, ns)
			}
			seen[ns] = host
			nodeNS := strings.TrimSpace(run(t, cluster["NODE_EXEC"], host, "readlink", "/proc/self/ns/mnt").stdout)
			if ns == nodeNS {
				t.Errorf("%s: tasks are in the node's own mount namespace", host)
			}
		}
	}
}

// Tasks run as the job user, who exists inside by name.
func TestTasksAreTheJobUser(t *testing.T) {
	want := strings.TrimSpace(asUser(t, "id").stdout)
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "id")
	mustSucceed(t, r)
	// busybox's id prints the same fields as coreutils' for a user without
	// supplementary groups in the image's view: compare uid and gid parts.
	for _, part := range strings.Fields(want)[:2] {
		if !strings.Contains(r.stdout, part) {
			t.Errorf("id inside %q lacks %q (outside: %q)", r.stdout, part, want)
		}
	}
}

// A setuid binary in the image gains nothing: the container's root is nosuid.
func TestSetuidGainsNothing(t *testing.T) {
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["MPI_IMAGE"], "sh", "-c",
		`stat -c %a /usr/bin/su; grep -E '^[0-9]+ [0-9]+ [^ ]+ / / ' /proc/self/mountinfo; su -c id root </dev/null; echo "su=$?"`)
	if !strings.HasPrefix(r.stdout, "4755\n") {
		t.Fatalf("/usr/bin/su is not setuid in the image:\n%s", r)
	}
	root := strings.Split(r.stdout, "\n")[1]
	if !regexp.MustCompile(`\bnosuid\b`).MatchString(root) {
		t.Errorf("container root is not nosuid: %s", root)
	}
	if strings.Contains(r.stdout, "uid=0") || strings.Contains(r.stdout, "su=0") {
		t.Errorf("setuid su gave root:\n%s", r)
	}
}

// The image's command runs even when the host has no such file, and host
// paths are invisible unless mounted.
func TestHostPathsInvisibleAndImageCommandsRun(t *testing.T) {
	r := srun(t, "-N1", "--mpi=pmix", "--container-image="+cluster["MPI_IMAGE"], cluster["MPI_RING"])
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "ring: rank 0 of 1") {
		t.Errorf("the image's ring did not run:\n%s", r)
	}
	r = srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c", "test -e /usr/sbin/slurmd && echo visible || echo invisible")
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "invisible" {
		t.Errorf("host's /usr/sbin/slurmd is visible inside")
	}
}

// --container-mounts binds the user's path, read-only when asked; a path the
// user cannot reach is refused with the cause.
func TestContainerMounts(t *testing.T) {
	dir := inHome(t, "e2e-mounts")
	mustSucceed(t, asUser(t, "sh", "-c", "mkdir -p "+dir+" && echo hello >"+dir+"/f"))
	t.Cleanup(func() { os.RemoveAll(dir) })

	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts="+dir+":/data:ro",
		"sh", "-c", "cat /data/f; touch /data/g 2>/dev/null && echo wrote || echo read-only")
	mustSucceed(t, r)
	if r.stdout != "hello\nread-only\n" {
		t.Errorf("ro mount: %q", r.stdout)
	}
	r = asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts="+dir+":/data", "touch", "/data/g")
	mustSucceed(t, r)

	r = asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts=/root/.bashrc:/x", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "podman-hpc: ") || !strings.Contains(r.stderr, "/root/.bashrc: permission denied") {
		t.Errorf("a file under /root (0700) was not refused clearly:\n%s", r)
	}
	r = asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts=/no/such/dir:/x", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "source path does not exist: /no/such/dir") {
		t.Errorf("a missing source was not refused clearly:\n%s", r)
	}
}

// Home is mounted by default (admin default) and not with --no-container-mount-home.
func TestMountHome(t *testing.T) {
	home := strings.TrimSpace(asUser(t, "sh", "-c", "echo $HOME").stdout)
	check := "test -d " + home + " && echo yes || echo no"
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c", check)
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "yes" {
		t.Errorf("home not mounted by default")
	}
	r = asUser(t, "srun", "-N1", "--no-container-mount-home", "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c", check)
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "no" {
		t.Errorf("home mounted despite --no-container-mount-home")
	}
}

// The working directory is the image's by default, or --container-workdir.
func TestWorkdir(t *testing.T) {
	r := srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "pwd")
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "/" {
		t.Errorf("default workdir %q, want the image's /", r.stdout)
	}
	r = srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-workdir=/tmp", "pwd")
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "/tmp" {
		t.Errorf("--container-workdir=/tmp: pwd %q", r.stdout)
	}
	// A relative one resolves inside the root, as pyxis's does.
	for wd, want := range map[string]string{"../": "/", "tmp": "/tmp"} {
		r = srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-workdir="+wd, "pwd")
		mustSucceed(t, r)
		if strings.TrimSpace(r.stdout) != want {
			t.Errorf("--container-workdir=%s: pwd %q, want %s", wd, r.stdout, want)
		}
	}
	// A missing one fails in pyxis's words, once per task.
	r = srun(t, "-N1", "-n2", "--container-image="+cluster["SMALL_IMAGE"], "--container-workdir=/nosuch", "pwd")
	if r.code == 0 || strings.Count(r.stderr, "/nosuch: No such file or directory") != 2 || strings.Contains(r.stdout, "/") {
		t.Errorf("--container-workdir=/nosuch:\n%s", r)
	}
}

// The root is read-only by default and writable with --container-writable.
func TestWritable(t *testing.T) {
	touch := "touch /new 2>/dev/null && echo writable || echo read-only"
	r := srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c", touch)
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "read-only" {
		t.Errorf("default root: %s", r.stdout)
	}
	r = srun(t, "-N1", "--container-writable", "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c", touch)
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "writable" {
		t.Errorf("--container-writable: %s", r.stdout)
	}
}

// The image's environment wins over the host's, unless --container-env
// names the variable (pyxis's precedence); other host variables pass.
func TestEnvironmentPrecedence(t *testing.T) {
	show := `echo "$PATH|$PHPC_E2E"`
	// The cluster's srun by its path: the PATH set here does not find it.
	srunPath, err := exec.LookPath("srun")
	if err != nil {
		t.Fatal(err)
	}
	base := []string{"PATH=/host/bin:/usr/bin:/bin", "PHPC_E2E=from-host", srunPath, "-N1", "--container-image=" + cluster["SMALL_IMAGE"]}
	r := run(t, "env", append(base, "/bin/sh", "-c", show)...)
	mustSucceed(t, r)
	if got := strings.TrimSpace(r.stdout); strings.HasPrefix(got, "/host/bin") || !strings.HasSuffix(got, "|from-host") {
		t.Errorf("image PATH should win, host-only variables pass: %q", got)
	}
	r = run(t, "env", append(base, "--container-env=PATH", "/bin/sh", "-c", show)...)
	mustSucceed(t, r)
	if got := strings.TrimSpace(r.stdout); !strings.HasPrefix(got, "/host/bin:") {
		t.Errorf("--container-env=PATH: host PATH should win: %q", got)
	}
}

// The batch script itself runs inside the container.
func TestBatchScriptRunsInside(t *testing.T) {
	script := "#!/bin/sh\n#SBATCH --container-image=" + cluster["SMALL_IMAGE"] + "\n#SBATCH -N1\ncat /etc/os-release\n"
	id, out := sbatch(t, script)
	if !strings.Contains(out, "ID=podman-hpc-small") {
		t.Errorf("job %s: the batch script did not run in the image; output:\n%s", id, out)
	}
}

// A missing image is one clear line in srun's output, naming it.
func TestMissingImageIsAClearError(t *testing.T) {
	img := cluster["REGISTRY"] + "/podman-hpc/does-not-exist:1"
	r := srun(t, "-N1", "--container-image="+img, "true")
	if r.code == 0 {
		t.Fatal("step succeeded with a missing image")
	}
	if !regexp.MustCompile(`podman-hpc: failed to import docker image: ` + regexp.QuoteMeta(img) + `: manifest unknown`).MatchString(r.stderr) {
		t.Errorf("stderr does not name the image:\n%s", r.stderr)
	}
}

// After every step no container, mount or init process is left on any node.
func TestNothingLeftAfterSteps(t *testing.T) {
	mustSucceed(t, srun(t, "-N2", "--container-image="+cluster["SMALL_IMAGE"], "true"))
	for _, n := range nodes() {
		checkNothingLeft(t, n)
	}
}

// Restarting a node's daemon during a step: the running tasks go on in the
// container's namespace, and no container or mount is left behind once
// they are done.
func TestDaemonRestartDuringStep(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	done := make(chan result, 1)
	go func() {
		done <- srun(t, "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c", "sleep 2; grep ^ID= /etc/os-release")
	}()
	time.Sleep(time.Second)
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node))
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node))
	r := <-done
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "ID=podman-hpc-small" {
		t.Errorf("task after the restart: %q", r.stdout)
	}
	checkNothingLeft(t, node)
}

// The job epilog's safety net: podman-hpcd rm --job removes what a job has
// on a node; the step's tasks, already inside, finish.
func TestRemoveJobContainers(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	done := make(chan result, 1)
	go func() {
		done <- srun(t, "-N1", "-w", node, "-J", "rm-test", "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c", "sleep 2; echo finished")
	}()
	var job string
	for i := 0; i < 50 && job == ""; i++ {
		time.Sleep(100 * time.Millisecond)
		job = strings.TrimSpace(run(t, "squeue", "-h", "-n", "rm-test", "-o", "%i").stdout)
	}
	if job == "" {
		t.Fatal("the step did not start")
	}
	var ps string
	for i := 0; i < 50 && !strings.Contains(ps, "phpc-"+job+"-"); i++ {
		time.Sleep(100 * time.Millisecond)
		ps = podmanHpcd(t, node, "ps").stdout
	}
	if !strings.Contains(ps, "phpc-"+job+"-0") {
		t.Fatalf("ps does not list the job's container:\n%s", ps)
	}
	mustSucceed(t, podmanHpcd(t, node, "rm", "--job", job))
	if ps := podmanHpcd(t, node, "ps").stdout; strings.Contains(ps, "phpc-"+job+"-") {
		t.Errorf("container still listed after rm --job:\n%s", ps)
	}
	r := <-done
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "finished" {
		t.Errorf("task output %q", r.stdout)
	}
}
