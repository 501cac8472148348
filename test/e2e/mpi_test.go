//go:build e2e

package e2e

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// checkRing asserts that every rank of an n-rank ring reported in and rank 0
// saw the message come round.
func checkRing(t *testing.T, r result, n int, library string) {
	t.Helper()
	mustSucceed(t, r)
	for rank := 0; rank < n; rank++ {
		if !strings.Contains(r.stdout, fmt.Sprintf("ring: rank %d of %d on ", rank, n)) {
			t.Errorf("rank %d did not report in:\n%s", rank, r)
		}
	}
	if !regexp.MustCompile(`ring: rank 0 got the message back after \d+ laps`).MatchString(r.stdout) {
		t.Errorf("the message did not come round:\n%s", r)
	}
	if !strings.Contains(r.stdout, "ring: library "+library) {
		t.Errorf("not %s:\n%s", library, r)
	}
}

// Open MPI over PMIx, ranks on two nodes, in the image.
func TestMPIRingPMIx(t *testing.T) {
	r := srun(t, "-N2", "--ntasks-per-node=2", "--mpi=pmix", "--container-image="+cluster["MPI_IMAGE"], cluster["MPI_RING"])
	checkRing(t, r, 4, "Open MPI")
}

// Open MPI over PMIx, ranks on four nodes, in the image.
func TestMPIRingPMIxFourNodes(t *testing.T) {
	if len(nodes()) < 4 {
		t.Skipf("needs 4 nodes, the cluster has %d (make e2e brings up E2E_NODES=4)", len(nodes()))
	}
	r := srun(t, "-N4", "--ntasks-per-node=2", "--mpi=pmix", "--container-image="+cluster["MPI_IMAGE"], cluster["MPI_RING"])
	checkRing(t, r, 8, "Open MPI")
	for _, n := range nodes()[:4] {
		if !strings.Contains(r.stdout, " on "+n+"\n") {
			t.Errorf("no rank ran on %s:\n%s", n, r)
		}
	}
}

// MPICH over PMI-2, ranks on two nodes, in the image.
func TestMPIRingPMI2(t *testing.T) {
	r := runEnv(t, mpichAcrossNodes, "srun", "-N2", "--ntasks-per-node=2", "--mpi=pmi2", "--container-image="+cluster["MPI_IMAGE"], cluster["MPI_RING_MPICH"])
	checkRing(t, r, 4, "MPICH")
}

// A batch script runs inside the image, and its srun (the host's Slurm
// client, bound in) starts MPI steps that inherit the image.
func TestBatchStepsInheritImage(t *testing.T) {
	script := "#!/bin/bash\n#SBATCH --container-image=" + cluster["MPI_IMAGE"] + "\n#SBATCH -N2 --ntasks-per-node=2\n" +
		"grep ^ID= /etc/os-release\nsrun --mpi=pmix " + cluster["MPI_RING"] + "\n"
	id, out := sbatch(t, script)
	if !strings.HasPrefix(out, "ID=debian\n") {
		t.Errorf("job %s: batch script not in the image:\n%s", id, out)
	}
	checkRing(t, result{stdout: out}, 4, "Open MPI")
}

// bmlLine is Open MPI's own report of the transport one rank uses to send to
// another: "[node1:123] mca: bml: Using vader btl for send to [[5,6],1] on
// node node1" (btl_base_verbose >= 20).
var bmlLine = regexp.MustCompile(`(?m)^\[([^:\]]+):\d+\] mca: bml: Using (\w+) btl for send to \[\[\d+,\d+\],(\d+)\] on node (\S+)$`)

// Ranks of one node talk through shared memory (vader: they share the
// node's container, its /dev/shm and IPC namespace), ranks on different
// nodes over TCP, as the MPI library itself reports its choice.
func TestMPISharedMemoryOnNodeTCPBetween(t *testing.T) {
	r := run(t, "env", "OMPI_MCA_btl_base_verbose=100", "srun", "-N2", "--ntasks-per-node=2", "--mpi=pmix",
		"-w", strings.Join(nodes()[:2], ","), "--container-image="+cluster["MPI_IMAGE"], cluster["MPI_RING"])
	checkRing(t, r, 4, "Open MPI")
	out := r.stdout + r.stderr
	seen := map[string]int{}
	for _, m := range bmlLine.FindAllStringSubmatch(out, -1) {
		from, btl, to := m[1], m[2], m[4]
		if btl == "self" {
			continue // a rank to itself
		}
		want := "tcp"
		if from == to {
			want = "vader"
		}
		if btl != want {
			t.Errorf("%s to a rank on %s uses %s, want %s: %s", from, to, btl, want, m[0])
		}
		seen[btl]++
	}
	// Each of the 4 ranks has one peer on its node; the ring crosses
	// between the nodes twice.
	if seen["vader"] < 4 || seen["tcp"] < 2 {
		t.Errorf("transport reports: %d vader (want 4), %d tcp (want >= 2):\n%s", seen["vader"], seen["tcp"], out)
	}
}

// Everything Slurm and PMIx pass through the environment reaches the tasks
// inside, as an ordinary user, with no option: the same variables as in a
// bare step, with values that agree with each task, and every path a PMI or
// PMIx variable names (the PMIx server's directory and its shared-memory
// stores, under Slurm's spool: as many as in the bare step, which differ
// between PMIx releases) exists inside at the host's path, like the
// per-step directory in Slurm's TmpFS. (PMIX_SYSTEM_TMPDIR, /tmp, is the
// container's own: only tools look there.) The ring then runs in that step.
func TestMPIEnvironmentInside(t *testing.T) {
	names := `env | grep -E '^(SLURM|SLURMD|PMI|PMIX)_' | cut -d= -f1`
	paths := `env | grep -E '^(PMI|PMIX)_[A-Z0-9_]*=/' | cut -d= -f2- | sort -u`
	bare := asUser(t, "srun", "-N2", "--ntasks-per-node=2", "--mpi=pmix", "-l", "-w", strings.Join(nodes()[:2], ","),
		"bash", "-c", names+"; "+paths+" | sed 's/^/path /'")
	mustSucceed(t, bare)

	script := names + ` | while read -r v; do echo "env $v=${!v}"; done
` + paths + ` |
	while read -r p; do test -e "$p" && echo "exists $p" || echo "missing $p"; done
d=` + cluster["LAB"] + `/run/$SLURMD_NODENAME/tmp/spmix_appdir_${SLURM_JOB_UID}_${SLURM_JOB_ID}.${SLURM_STEP_ID}
test -d "$d" && echo "exists $d" || echo "missing $d"
exec ` + cluster["MPI_RING"]
	r := asUser(t, "srun", "-N2", "--ntasks-per-node=2", "--mpi=pmix", "-l", "-w", strings.Join(nodes()[:2], ","),
		"--container-image="+cluster["MPI_IMAGE"], "bash", "-c", script)

	want := map[string][]string{} // task -> variable names in the bare step
	barePaths := 0                // paths PMI and PMIx name in the bare step
	for _, line := range strings.Split(strings.TrimSpace(bare.stdout), "\n") {
		task, name, _ := strings.Cut(line, ": ")
		if strings.HasPrefix(name, "path ") {
			barePaths++
			continue
		}
		want[task] = append(want[task], name)
	}
	env := map[string]map[string]string{} // task -> inside
	var found int
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		task, rest, _ := strings.Cut(line, ": ")
		if env[task] == nil {
			env[task] = map[string]string{}
		}
		switch kind, arg, _ := strings.Cut(rest, " "); kind {
		case "env":
			k, v, _ := strings.Cut(arg, "=")
			env[task][k] = v
		case "missing":
			t.Errorf("task %s: %s is not there inside", task, arg)
		case "exists":
			found++
			if !strings.HasPrefix(arg, cluster["LAB"]+"/run/") && arg != "/tmp" {
				t.Errorf("task %s: unexpected path %s", task, arg)
			}
		}
	}
	if len(want) != 4 || len(env) != 4 {
		t.Fatalf("want 4 tasks in both steps; bare:\n%s\ninside:\n%s", bare, r)
	}
	// Per task: the spool directory, /tmp, the stores (two with PMIx 4,
	// none with PMIx 5's shmem2), all as in the bare step; the TmpFS directory.
	if barePaths < 4*2 || found < barePaths+4 {
		t.Errorf("%d paths checked inside, want %d (%d in the bare step, and 4 TmpFS directories):\n%s", found, barePaths+4, barePaths, r)
	}
	for task, names := range want {
		e := env[task]
		for _, name := range names {
			if _, ok := e[name]; !ok {
				t.Errorf("task %s: %s is set in a bare step, not inside", task, name)
			}
		}
		ns := "slurm.pmix." + e["SLURM_JOB_ID"] + "." + e["SLURM_STEP_ID"]
		if e["SLURM_PROCID"] != task || e["PMIX_RANK"] != task || e["PMIX_NAMESPACE"] != ns {
			t.Errorf("task %s: SLURM_PROCID=%s PMIX_RANK=%s PMIX_NAMESPACE=%s (want %s)", task, e["SLURM_PROCID"], e["PMIX_RANK"], e["PMIX_NAMESPACE"], ns)
		}
		spool := cluster["LAB"] + "/run/" + e["SLURMD_NODENAME"] + "/spool/pmix." + e["SLURM_JOB_ID"] + "." + e["SLURM_STEP_ID"]
		if !strings.HasPrefix(e["PMIX_SERVER_TMPDIR"], spool) {
			t.Errorf("task %s: PMIX_SERVER_TMPDIR=%q, want the host's %s", task, e["PMIX_SERVER_TMPDIR"], spool)
		}
	}
	checkRing(t, r, 4, "Open MPI")
}

// A rank that crashes mid-ring ends the step as it does on bare metal:
// srun reports the signal and exits non-zero, the other ranks are killed,
// and the container is torn down on every node of the step.
func TestMPIRankCrashEndsStep(t *testing.T) {
	mpicc, err := exec.LookPath("mpicc.openmpi")
	if err != nil {
		t.Skipf("%q not found in PATH", "mpicc.openmpi")
	}
	hostRing := filepath.Join(t.TempDir(), "ring")
	if out, err := exec.Command(mpicc, "-O2", "-o", hostRing, "../images/ring.c").CombinedOutput(); err != nil {
		t.Fatalf("compiling the ring for the host: %v\n%s", err, out)
	}
	two := strings.Join(nodes()[:2], ",")
	crash := regexp.MustCompile(`(?m)^srun: error: \S+: task 1: Segmentation fault`)

	bare := run(t, "env", "RING_CRASH_RANK=1", "srun", "-N2", "--ntasks-per-node=2", "--mpi=pmix", "-w", two, hostRing)
	r := run(t, "env", "RING_CRASH_RANK=1", "srun", "-N2", "--ntasks-per-node=2", "--mpi=pmix", "-w", two,
		"--container-image="+cluster["MPI_IMAGE"], cluster["MPI_RING"])
	if bare.code == 0 || !crash.MatchString(bare.stderr) {
		t.Fatalf("bare metal: the crash did not end the step as expected:\n%s", bare)
	}
	if r.code != bare.code {
		t.Errorf("exit %d in the container, %d on bare metal:\n%s", r.code, bare.code, r)
	}
	if !crash.MatchString(r.stderr) {
		t.Errorf("srun did not report the crashed rank:\n%s", r)
	}
	if strings.Contains(r.stdout, "got the message back") {
		t.Errorf("the ring completed despite the crash:\n%s", r)
	}
	for _, n := range nodes()[:2] {
		checkNothingLeft(t, n)
		if left := run(t, cluster["NODE_EXEC"], n, "pgrep", "-x", "ring"); left.code == 0 {
			t.Errorf("%s: ranks left running: %s", n, left.stdout)
		}
	}
}
