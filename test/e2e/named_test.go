//go:build e2e

package e2e

import (
	"path/filepath"
	"strconv"
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

// NAME:exec attaches only to a container that runs, in pyxis's sense: one
// a step of the job is in now; not one whose steps have ended. NAME:no_exec
// on a running one starts a new container over its filesystem.
func TestNamedContainerExecNeedsRunning(t *testing.T) {
	img := cluster["SMALL_IMAGE"]
	r := inAllocation(t, `
cd "$(mktemp -d)"
srun --container-image=`+img+` --container-name=idle sh -c 'echo kept >/kept'
srun --container-name=idle:exec true 2>idle.err; echo "exec-idle=$?"
srun --container-name=idle sh -c 'readlink /proc/self/ns/mnt >/ns; while [ ! -e /tmp/stop ]; do sleep 0.1; done' &
for i in $(seq 100); do
	srun --overlap --container-name=idle:exec sh -c 'cat /kept; readlink /proc/self/ns/mnt; cat /ns' >exec.out 2>exec.err && break
	sleep 0.1
done
echo "exec-running=$(cat exec.out | tr '\n' ' ')"
srun --overlap --container-name=idle:no_exec sh -c 'cat /kept; readlink /proc/self/ns/mnt' >noexec.out; echo "no_exec=$? $(cat noexec.out | tr '\n' ' ')"
srun --overlap --container-name=idle:exec touch /tmp/stop
wait
srun --container-name=idle:exec true 2>ended.err; echo "exec-ended=$?"
cat idle.err ended.err
`)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "exec-idle=1") || !strings.Contains(r.stdout, "exec-ended=1") ||
		strings.Count(r.stdout, "--container-name=idle:exec: the container exists but is not running") != 2 {
		t.Errorf("exec into a container no step runs in was not refused, twice:\n%s", r)
	}
	exec := strings.Fields(strings.TrimPrefix(regexpFind(r.stdout, `exec-running=.*`), "exec-running="))
	if len(exec) != 3 || exec[0] != "kept" || exec[1] != exec[2] {
		t.Fatalf("exec into the running container: %q\n%s", exec, r)
	}
	noExec := strings.Fields(strings.TrimPrefix(regexpFind(r.stdout, `no_exec=.*`), "no_exec="))
	if len(noExec) != 3 || noExec[0] != "0" || noExec[1] != "kept" || noExec[2] == exec[1] {
		t.Errorf("no_exec on the running container: want its filesystem in a new container, got %q (running in %s)", noExec, exec[1])
	}
}

// A container_scope=global container parked between the user's jobs does
// not run: NAME:exec fails; NAME starts it again.
func TestNamedContainerExecParkedGlobal(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	withPlugstackArg(t, "container_scope=global")
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	name := "parked" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	t.Cleanup(func() { podmanHpcd(t, node, "rm", "--name", name, "--uid", uid) })
	// Remapped: the root is the user's to write (the image's files are root's).
	mustSucceed(t, asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "--container-remap-root", "--container-name="+name, "sh", "-c", "echo kept >/kept"))
	waitParked(t, node, name)
	// Parked, its filesystem is its own, a file in writable_dir
	// (SECURITY.md), mounted in its bundle; nothing of it in state_dir.
	state := filepath.Join(cluster["LAB"], "nodelocal", "state", "containers")
	if r := run(t, cluster["NODE_EXEC"], node, "sh", "-c", "cat "+state+"/*/rw/upper/kept; ls "+writableDir()+"; ls "+state+"/*/upper 2>&1"); !strings.HasPrefix(r.stdout, "kept\n") ||
		!strings.Contains(r.stdout, ".ext4\n") || !strings.Contains(r.stdout, "No such file") {
		t.Errorf("the parked container's /kept is not in its own file system (writable_dir %s):\n%s", writableDir(), r)
	}
	r := asUser(t, "srun", "-N1", "-w", node, "--container-name="+name+":exec", "--container-remap-root", "cat", "/kept")
	if r.code == 0 || !strings.Contains(r.stderr, "--container-name="+name+":exec: the container exists but is not running") {
		t.Errorf("exec into a parked container:\n%s", r)
	}
	r = asUser(t, "srun", "-N1", "-w", node, "--container-name="+name, "--container-remap-root", "cat", "/kept")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "kept" {
		t.Errorf("auto on the parked container:\n%s", r)
	}
	// Parked again by the job's epilog, before the cleanup removes it.
	waitParked(t, node, name)
}

// waitParked waits until node lists the global container name as parked.
func waitParked(t *testing.T, node, name string) {
	t.Helper()
	var ps string
	for i := 0; i < 50; i++ {
		if ps = podmanHpcd(t, node, "ps").stdout; strings.Contains(ps, name+" (parked") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s is not parked after its job:\n%s", name, ps)
}
