//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// inAllocation runs a shell script in a one-node allocation (salloc), whose
// srun steps are the steps of one job.
func inAllocation(t *testing.T, script string) result {
	t.Helper()
	// --exact (SLURM_EXACT): steps take one CPU each, so several may run at
	// once in the allocation (Slurm 22.05 gives a step every CPU otherwise).
	// One task per step unless a step says otherwise.
	return run(t, "env", "SLURM_EXACT=1", "salloc", "-N1", "-n4", "-t", "2", "-w", nodes()[0], "-Q", "sh", "-c",
		"export SLURM_NTASKS=1 SLURM_NPROCS=1\n"+script)
}

// A named container keeps its writes for the job's later steps; pyxis's
// modes behave as documented; it is gone when the job ends.
func TestNamedContainer(t *testing.T) {
	img := cluster["SMALL_IMAGE"]
	r := inAllocation(t, `
cd "$(mktemp -d)"
srun --container-image=`+img+` --container-name=keep sh -c 'echo state >/kept; readlink /proc/self/ns/mnt' >ns1
srun --container-name=keep sh -c 'cat /kept >&2; readlink /proc/self/ns/mnt' >ns2
srun --container-name=keep:create true 2>create.err; echo "create=$?"
srun --container-name=nosuch:exec true 2>exec.err; echo "exec=$?"
srun --container-name=keep:no_exec sh -c 'cat /kept >&2; readlink /proc/self/ns/mnt' >ns3
cat create.err exec.err
echo "same-ns=$(cmp -s ns1 ns2 && echo yes || echo no) no_exec-ns=$(cmp -s ns1 ns3 && echo same || echo new)"
echo "job=$SLURM_JOB_ID"
`)
	mustSucceed(t, r)
	for _, want := range []string{
		"create=1", "exec=1", "same-ns=yes", "no_exec-ns=new",
		"--container-name=keep:create: a container of that name already exists in this job",
		"--container-name=nosuch:exec: no container of that name runs in this job",
	} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Errorf("lacks %q:\n%s", want, r)
		}
	}
	if strings.Count(r.stderr, "state\n") != 2 {
		t.Errorf("the named container's file was not seen by both later steps:\n%s", r)
	}
	// The job is over: its epilog removed the named container.
	job := strings.TrimPrefix(regexpFind(r.stdout, `job=\d+`), "job=")
	var ps string
	for i := 0; i < 50; i++ {
		if ps = podmanHpcd(t, nodes()[0], "ps").stdout; !strings.Contains(ps, "phpc-"+job+"-n-keep") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(ps, "phpc-"+job+"-n-keep") {
		t.Errorf("named container of finished job %s left:\n%s", job, ps)
	}
}

// Two jobs using the same name have two containers.
func TestNamedContainerPerJob(t *testing.T) {
	img := cluster["SMALL_IMAGE"]
	a := inAllocation(t, `srun --container-image=`+img+` --container-name=same sh -c 'echo A >/mine; cat /mine'`)
	b := inAllocation(t, `srun --container-image=`+img+` --container-name=same sh -c 'cat /mine 2>/dev/null || echo fresh'`)
	mustSucceed(t, a)
	mustSucceed(t, b)
	if strings.TrimSpace(a.stdout) != "A" || strings.TrimSpace(b.stdout) != "fresh" {
		t.Errorf("jobs share a named container: %q then %q", a.stdout, b.stdout)
	}
}

// Attaching to a named container while its job's teardown removes it either
// works or fails cleanly: no hang, no half-torn container (pyxis#181).
func TestNamedContainerAttachDuringTeardown(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	r := inAllocation(t, `
cd "$(mktemp -d)"
srun -n1 --container-image=`+cluster["SMALL_IMAGE"]+` --container-name=racy sh -c 'echo here >/f'
for i in 1 2 3; do srun -n1 --container-name=racy cat /f >out.$i 2>err.$i & done
`+cluster["NODE_EXEC"]+` `+node+` `+cluster["PODMAN_HPCD"]+` rm --socket `+cluster["PODMAN_HPCD_SOCKET"]+` --job $SLURM_JOB_ID
wait
for i in 1 2 3; do echo "try $i: $(cat out.$i) $(grep -o 'no container of that name\|podman-hpc: [^;]*' err.$i | head -1)"; done
`)
	mustSucceed(t, r)
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if !strings.HasPrefix(line, "try ") {
			continue
		}
		if !strings.Contains(line, " here") && !strings.Contains(line, "podman-hpc:") {
			t.Errorf("neither worked nor failed clearly: %q", line)
		}
	}
}

// --container-save writes the container's filesystem, with the step's
// writes, as a squashfs the user owns, usable as an image; an existing file
// is replaced; a path the user cannot write stays unwritten. The user
// installs as root inside (remap-root), the usual way.
func TestContainerSave(t *testing.T) {
	home := strings.TrimSpace(asUser(t, "sh", "-c", "echo $HOME").stdout)
	out := filepath.Join(home, "e2e-saved.sqfs")
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

// entrypointImage makes an OCI layout of the small image with an entrypoint
// that exports a variable, says what it ran, and runs its arguments.
func entrypointImage(t *testing.T, script string) string {
	t.Helper()
	if _, err := exec.LookPath("umoci"); err != nil {
		t.Skipf("%q not found in PATH", "umoci")
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	layout := filepath.Join(dir, "img")
	mustSucceed(t, run(t, "cp", "-r", "../../build/images/small", layout))
	ep := filepath.Join(dir, "entrypoint.sh")
	os.WriteFile(ep, []byte(script), 0o755)
	mustSucceed(t, run(t, "umoci", "insert", "--image", layout+":latest", ep, "/entrypoint.sh"))
	mustSucceed(t, run(t, "umoci", "config", "--image", layout+":latest", "--config.entrypoint", "/entrypoint.sh"))
	mustSucceed(t, run(t, "chmod", "-R", "a+rX", dir))
	return "oci:" + layout + ":latest"
}

// --container-entrypoint runs the image's entrypoint first: what it exports
// reaches the tasks, its output shows with --container-entrypoint-log, and
// one that does not run the command is a clear error.
func TestContainerEntrypoint(t *testing.T) {
	img := entrypointImage(t, "#!/bin/sh\necho \"entrypoint ran\"\nexport FROM_ENTRYPOINT=yes\nexec \"$@\"\n")
	show := []string{"sh", "-c", "echo FROM_ENTRYPOINT=$FROM_ENTRYPOINT"}
	r := srun(t, append([]string{"-N1", "--container-image=" + img, "--container-entrypoint", "--container-entrypoint-log"}, show...)...)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "FROM_ENTRYPOINT=yes") || !strings.Contains(r.stderr, "podman-hpc: entrypoint: entrypoint ran") {
		t.Errorf("with the entrypoint:\n%s", r)
	}
	r = srun(t, append([]string{"-N1", "--container-image=" + img}, show...)...)
	mustSucceed(t, r)
	if strings.Contains(r.stdout, "=yes") || strings.Contains(r.stderr, "entrypoint ran") {
		t.Errorf("the entrypoint ran without --container-entrypoint:\n%s", r)
	}
	bad := entrypointImage(t, "#!/bin/sh\necho broken entrypoint\nexit 3\n")
	r = srun(t, "-N1", "--container-image="+bad, "--container-entrypoint", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "the image's entrypoint exited before running the command (try --no-container-entrypoint)") ||
		!strings.Contains(r.stderr, "broken entrypoint") {
		t.Errorf("a failing entrypoint:\n%s", r)
	}
}

// --container-remap-root: the user is root inside, owns the image's files
// there (a writable root takes writes anywhere), and what they create on
// mounts belongs to them on the host.
func TestRemapRoot(t *testing.T) {
	home := strings.TrimSpace(asUser(t, "sh", "-c", "echo $HOME").stdout)
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	dir := filepath.Join(home, "e2e-remap")
	mustSucceed(t, asUser(t, "mkdir", "-p", dir))
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["MPI_IMAGE"], "--container-remap-root", "--container-writable",
		"--container-mounts="+dir+":/data", "sh", "-c", "id -u; stat -c %u /etc/passwd /usr/bin; echo x >/etc/new-file && echo wrote; touch /data/made-inside")
	mustSucceed(t, r)
	if r.stdout != "0\n0\n0\nwrote\n" {
		t.Errorf("inside: %q, want root, root-owned files, a write to /etc", r.stdout)
	}
	fi, err := os.Stat(filepath.Join(dir, "made-inside"))
	if err != nil || fileUID(fi) != uid {
		t.Errorf("file made on a mount: %v, owner %v (want %s)", err, fi, uid)
	}
	// No privilege: root inside cannot read what the user could not.
	r = asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-remap-root", "--container-mounts=/etc/shadow:/shadow", "cat", "/shadow")
	if r.code == 0 {
		t.Errorf("root inside read /etc/shadow:\n%s", r)
	}
	// Nor over the node: its /dev/null (the runtime's stdin once) is root's.
	if fi, err := os.Stat("/dev/null"); err != nil || fileUID(fi) != "0" {
		t.Errorf("/dev/null after remap-root steps: owner %v, %v", fi, err)
	}
}

// --container-unshare gives private namespaces on request; by default the
// container shares the node's.
func TestContainerUnshare(t *testing.T) {
	node := nodes()[0]
	nodeNet := strings.TrimSpace(run(t, cluster["NODE_EXEC"], node, "readlink", "/proc/self/ns/net").stdout)
	show := []string{"sh", "-c", "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; cat /proc/net/dev | grep -c :"}
	r := srun(t, append([]string{"-N1", "-w", node, "--container-image=" + cluster["SMALL_IMAGE"]}, show...)...)
	mustSucceed(t, r)
	if lines := strings.Fields(r.stdout); len(lines) != 3 || lines[0] != nodeNet {
		t.Errorf("default: not the node's network: %q (node %s)", r.stdout, nodeNet)
	}
	r = srun(t, append([]string{"-N1", "-w", node, "--container-unshare=net,ipc", "--container-image=" + cluster["SMALL_IMAGE"]}, show...)...)
	mustSucceed(t, r)
	if lines := strings.Fields(r.stdout); len(lines) != 3 || lines[0] == nodeNet || lines[2] != "1" {
		t.Errorf("--container-unshare=net,ipc: want a private network with only lo: %q", r.stdout)
	}
	r = srun(t, "-N1", "--container-unshare=pid", "--container-image="+cluster["SMALL_IMAGE"], "true")
	if r.code == 0 || !strings.Contains(r.stderr, `--container-unshare: unknown namespace "pid"`) {
		t.Errorf("unknown namespace:\n%s", r)
	}
}

// In an #SBATCH line, REGISTRY#IMAGE is written with the '#' escaped, as
// pyxis documents.
func TestSbatchEscapedHash(t *testing.T) {
	ref := strings.Replace(cluster["SMALL_IMAGE"], "/", `\#`, 1)
	script := "#!/bin/sh\n#SBATCH --container-image=" + ref + "\n#SBATCH -N1\ngrep ^ID= /etc/os-release\n"
	id, out := sbatch(t, script)
	if strings.TrimSpace(out) != "ID=podman-hpc-small" {
		t.Errorf("job %s (%s): %q", id, ref, out)
	}
}
