//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// srunJob runs srun with args, the command printing the job id first, and
// returns the id and the result.
func srunJob(t *testing.T, env []string, args ...string) (string, result) {
	t.Helper()
	r := runEnv(t, env, "srun", args...)
	id, _, _ := strings.Cut(r.stdout, "\n")
	return strings.TrimSpace(id), r
}

func markerOf(job string) string {
	return filepath.Join(cluster["LAB"], "run", "hook-markers", "phpc-"+job+"-0")
}

// A hooks.d hook whose condition is an annotation runs only for the jobs
// that ask for it, by option or by its environment form, and is timed in
// the daemon's log.
func TestHookRunsOnlyWhenAsked(t *testing.T) {
	node := nodes()[0]
	img := "--container-image=" + cluster["MPI_IMAGE"] // mpi needs its MPICH
	cmd := []string{"sh", "-c", "echo $SLURM_JOB_ID"}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		runs bool
	}{
		{"option", nil, []string{"--container-hooks=marker"}, true},
		{"environment", []string{"PODMAN_HPC_CONTAINER_HOOKS=marker"}, nil, true},
		{"not asked", nil, nil, false},
		{"other hooks asked", nil, []string{"--container-hooks=mpi,no-gpu"}, false},
		{"no pyxis form: pyxis has no such option", []string{"PYXIS_CONTAINER_HOOKS=marker"}, nil, false},
	} {
		args := append(append([]string{"-N1", "-w", node, img}, tc.args...), cmd...)
		job, r := srunJob(t, tc.env, args...)
		mustSucceed(t, r)
		_, err := os.Stat(markerOf(job))
		if ran := err == nil; ran != tc.runs {
			t.Errorf("%s: job %s: hook ran = %v, want %v", tc.name, job, ran, tc.runs)
		}
		if tc.runs && !regexp.MustCompile(`msg="hook ran" job=`+job+` step=0 container=phpc-`+job+`-0 hook=01-marker.json stage=createRuntime exit=0 duration=\S+`).MatchString(daemonLog(t, node)) {
			t.Errorf("%s: %s's daemon log has no timing of the hook for job %s", tc.name, node, job)
		}
	}
}

// A createContainer hook may write into the container's root, which is
// read-only again for the tasks.
func TestHookWritesIntoReadOnlyRoot(t *testing.T) {
	r := srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-hooks=rootfile",
		"sh", "-c", "cat /etc/podman-hpc-hook-file; touch /etc/x 2>/dev/null && echo writable || echo read-only")
	mustSucceed(t, r)
	if r.stdout != "written-by-a-hook\nread-only\n" {
		t.Errorf("got %q, want the hook's file in a read-only root", r.stdout)
	}
}

// A name the node does not offer is refused before the step starts.
func TestHookUnknownNameRefused(t *testing.T) {
	r := srun(t, "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-hooks=bogus", "true")
	want := `podman-hpc: --container-hooks: unknown hook "bogus" (this node offers: gpu, ib, marker, mpi, pmi, rootfile)`
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("want %q:\n%s", want, r)
	}
}

// devIno is how stat(1) prints a file's identity: "device:inode".
func devIno(t *testing.T, path string) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

const imageMPICH = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"

// The mpi module swaps the image's MPICH for the host's: the ring runs
// across two nodes, and the library every rank loads is the host's file
// (its device and inode), not the image's.
func TestModuleMPISwapsImageMPICH(t *testing.T) {
	host := devIno(t, imageMPICH) // the host has Debian's MPICH at the same path
	show := `stat -L -c "lib %d:%i" ` + imageMPICH + `; exec ` + cluster["MPI_RING_MPICH"]
	r := runEnv(t, mpichAcrossNodes, "srun", "-N2", "--ntasks-per-node=2", "--mpi=pmi2", "--container-image="+cluster["MPI_IMAGE"], "--container-hooks=mpi", "sh", "-c", show)
	checkRing(t, r, 4, "MPICH Version:")
	if got := strings.Count(r.stdout, "lib "+host+"\n"); got != 4 {
		t.Errorf("%d of 4 ranks see the host's %s (%s):\n%s", got, imageMPICH, host, r)
	}
	// Without the module, the image's own library.
	r = srun(t, "-N1", "--container-image="+cluster["MPI_IMAGE"], "sh", "-c", `stat -L -c "lib %d:%i" `+imageMPICH)
	mustSucceed(t, r)
	if strings.Contains(r.stdout, host) {
		t.Errorf("without --container-hooks=mpi the host's library is there:\n%s", r)
	}
	if !regexp.MustCompile(`msg=module job=\d+ step=0 module=mpi added="libmpich.so.12.2.2 over /usr/lib/x86_64-linux-gnu/libmpich.so.12.2.2; 0 device nodes" duration=`).MatchString(daemonLog(t, nodes()[0])) {
		t.Errorf("the daemon's log does not say what mpi swapped")
	}
}

// Variables a module sets reach the tasks; its LD_LIBRARY_PATH comes first.
func TestModuleEnvReachesTasks(t *testing.T) {
	r := srun(t, "-N2", "--container-image="+cluster["MPI_IMAGE"], "--container-hooks=mpi",
		"sh", "-c", `echo "$MPIR_CVAR_ENABLE_GPU $LD_LIBRARY_PATH $(ls /.podman-hpc/mpi/lib)"`)
	mustSucceed(t, r)
	if want := "0 /.podman-hpc/mpi/lib libhwloc.so.15\n"; r.stdout != want+want {
		t.Errorf("got %q, want %q on each node", r.stdout, want)
	}
}

// withDaemonConfig sets lines in the daemons' config (configWith) and restarts them,
// until the test ends.
func withDaemonConfig(t *testing.T, lines string) {
	t.Helper()
	requireRoot(t)
	conf := filepath.Join(cluster["LAB"], "etc", "podman-hpcd.conf")
	orig, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	restart := func() {
		for _, n := range nodes() {
			mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", n))
			mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", n))
		}
	}
	t.Cleanup(func() {
		os.WriteFile(conf, orig, 0o644)
		restart()
	})
	if err := os.WriteFile(conf, configWith(orig, lines), 0o644); err != nil {
		t.Fatal(err)
	}
	restart()
}

// A host library of another ABI (libmpich.so.13) is refused with both
// versions named, in srun's output.
func TestModuleMPIRefusesIncompatibleLibrary(t *testing.T) {
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skipf("%q not found in PATH", "gcc")
	}
	dir := t.TempDir()
	if out, err := exec.Command(gcc, "-shared", "-nostdlib", "-Wl,-soname,libmpich.so.13", "-o", filepath.Join(dir, "libmpich.so.13.0.0"), "-x", "c", "/dev/null").CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	withDaemonConfig(t, "mpi_libs = "+dir+"/libmpich.so.13*\nmpi_dependency_libs =")
	r := srun(t, "-N1", "--mpi=pmi2", "--container-image="+cluster["MPI_IMAGE"], "--container-hooks=mpi", cluster["MPI_RING_MPICH"])
	want := "podman-hpc: mpi: the host's libmpich.so.13.0.0 is not ABI-compatible with the image's libmpich.so.12.2.2 (mpi_abi_check = major: the major versions differ); use an image built with a compatible MPI, or run without --container-hooks=mpi"
	if r.code == 0 || !strings.Contains(r.stderr, want) {
		t.Errorf("want %q:\n%s", want, r)
	}
	// The same job without the module runs the image's MPICH. (Two ranks:
	// MPICH's ring with one hangs, with or without containers.)
	r = srun(t, "-N1", "-n2", "--mpi=pmi2", "--container-image="+cluster["MPI_IMAGE"], cluster["MPI_RING_MPICH"])
	checkRing(t, r, 2, "MPICH")
}

// The pmi module binds the step's own PMIx directories (pmi_dirs), made by
// Slurm before the container; the PMIx ring runs across two nodes.
func TestModulePMIBindsStepDirs(t *testing.T) {
	r := srun(t, "-N2", "--ntasks-per-node=2", "--mpi=pmix", "--container-image="+cluster["MPI_IMAGE"], "sh", "-c",
		`grep -oE " (/[^ ]*/pmix\.[0-9]+\.0|/[^ ]*/spmix_appdir_0_[0-9]+\.0) " /proc/self/mountinfo | sort -u | sed "s/^/mount/"; exec `+cluster["MPI_RING"])
	checkRing(t, r, 4, "Open MPI")
	for _, n := range []string{"node1", "node2"} {
		for _, dir := range []string{"/spool/pmix.", "/tmp/spmix_appdir_0_"} {
			if !regexp.MustCompile(`(?m)^mount ` + regexp.QuoteMeta(filepath.Join(cluster["LAB"], "run", n)+dir) + `\d+\.0 $`).MatchString(r.stdout) {
				t.Errorf("%s: no bind of the step's %s*:\n%s", n, dir, r)
			}
		}
	}
}

// srun, sbatch and salloc list --container-hooks.
func TestHooksOptionInHelp(t *testing.T) {
	for _, cmd := range []string{"srun", "sbatch", "salloc"} {
		r := run(t, cmd, "--help")
		mustSucceed(t, r)
		if !regexp.MustCompile(`(?m)^\s+--container-hooks=NAME\[,NAME\.\.\.\]\s`).MatchString(r.stdout) {
			t.Errorf("%s --help lacks --container-hooks", cmd)
		}
	}
}

// A createContainer hook that never returns (it writes into a FIFO the
// image put where the hook writes) goes with its step: cancelled, the step
// leaves no runtime, hook or container process behind once the hook's
// timeout (the test bed's rootfile hook: 10 s; DefaultTimeout where a hook
// names none) has passed, if not at once. Killing the runtime alone left
// them for good, as root, outside Slurm (review of 2026-12-06).
func TestHookStuckGoesWithTheStep(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	img := imageWithTree(t, func(tree string) {
		os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
		if err := syscall.Mkfifo(filepath.Join(tree, "etc", "podman-hpc-hook-file"), 0o666); err != nil {
			t.Fatal(err)
		}
	})
	hook := cluster["LAB"] + "/etc/hooks.d/rootfile.sh"
	job, done := stepInBackground(t, node, "hook-stuck", "--container-image="+img, "--container-hooks=rootfile", "true")
	// Its processes: those whose command line names this cluster.
	procs := `for p in $(pgrep -f "$1"); do [ "$p" != $$ ] && echo "$p $(tr '\0' ' ' </proc/$p/cmdline)"; done; true`
	var r result
	for i := 0; i < 100; i++ {
		if r = onNode(t, node, "", procs, hook); strings.Contains(r.stdout, "rootfile.sh") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(r.stdout, "rootfile.sh") {
		t.Fatalf("the hook never ran:\n%s", r)
	}
	run(t, "scancel", job)
	<-done
	for i := 0; i < 200; i++ {
		if r = onNode(t, node, "", procs, hook); strings.TrimSpace(r.stdout) == "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.TrimSpace(r.stdout) != "" {
		t.Errorf("left running 20 s after the step was cancelled:\n%s", r.stdout)
	}
	checkNothingLeft(t, node)
}
