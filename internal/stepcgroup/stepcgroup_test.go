package stepcgroup

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// This VM's hybrid layout, as the test cluster's mountinfo shows it.
const hybridMountinfo = `24 1 0:21 / /sys rw - sysfs sysfs rw
30 24 0:26 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
36 30 0:32 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
37 30 0:33 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
`

const pureV2Mountinfo = `30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate
`

func all(string) bool { return true }

func TestTargetV1Step(t *testing.T) {
	stepd := "6:freezer:/slurm_node1/uid_1001/job_7\n4:memory:/process_api/x\n2:cpu,cpuacct:/slurm_node1/uid_1001/job_7/step_0\n1:name=systemd:/\n0::/\n"
	got, err := target([]byte(stepd), "7", "0", false, parseMounts([]byte(hybridMountinfo)), all)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/sys/fs/cgroup/freezer/slurm_node1/uid_1001/job_7/step_0", "/sys/fs/cgroup/cpu,cpuacct/slurm_node1/uid_1001/job_7/step_0"}
	if !reflect.DeepEqual(got.Dirs, want) {
		t.Fatalf("dirs %q, want %q", got.Dirs, want)
	}
	// A named container outlives the step: the job's level.
	got, err = target([]byte(stepd), "7", "0", true, parseMounts([]byte(hybridMountinfo)), all)
	if err != nil || got.Dirs[0] != "/sys/fs/cgroup/freezer/slurm_node1/uid_1001/job_7" {
		t.Fatalf("whole job: %q, %v", got.Dirs, err)
	}
}

func TestTargetBatchStepName(t *testing.T) {
	stepd := "6:freezer:/slurm/uid_5/job_9\n"
	got, err := target([]byte(stepd), "9", "4294967291", false, parseMounts([]byte(hybridMountinfo)), all)
	if err != nil || len(got.Dirs) != 1 || !strings.HasSuffix(got.Dirs[0], "/job_9/step_batch") {
		t.Fatalf("batch: %q, %v", got.Dirs, err)
	}
}

func TestTargetV2TaskSpecial(t *testing.T) {
	stepd := "0::/system.slice/slurmstepd.scope/job_12/step_3/slurm\n"
	got, err := target([]byte(stepd), "12", "3", false, parseMounts([]byte(pureV2Mountinfo)), all)
	if err != nil {
		t.Fatal(err)
	}
	if want := "/sys/fs/cgroup/system.slice/slurmstepd.scope/job_12/step_3/user/task_special"; len(got.Dirs) != 1 || got.Dirs[0] != want {
		t.Fatalf("v2: %q, want %q", got.Dirs, want)
	}
	got, err = target([]byte(stepd), "12", "3", true, parseMounts([]byte(pureV2Mountinfo)), all)
	if err != nil || !strings.HasSuffix(got.Dirs[0], "/job_12/step_extern/user/task_special") {
		t.Fatalf("v2 whole job: %q, %v", got.Dirs, err)
	}
}

// Another job's number in the path, or none: nothing to join.
func TestTargetNoJobCgroup(t *testing.T) {
	for _, stepd := range []string{"6:freezer:/\n0::/\n", "6:freezer:/slurm/uid_5/job_70/step_0\n", "6:freezer:/slurm/uid_5/myjob_7\n"} {
		got, err := target([]byte(stepd), "7", "0", false, parseMounts([]byte(hybridMountinfo)), all)
		if err != nil || !got.Empty() {
			t.Errorf("%q: %q, %v; want nothing", stepd, got.Dirs, err)
		}
	}
}

// The job's cgroup without the step's: an error, never the job's in its
// place (Slurm would not end the container with the step).
func TestTargetMissingStep(t *testing.T) {
	stepd := "6:freezer:/slurm/uid_5/job_7\n"
	none := func(string) bool { return false }
	if _, err := target([]byte(stepd), "7", "0", false, parseMounts([]byte(hybridMountinfo)), none); !errors.Is(err, ErrNoStep) {
		t.Fatalf("err %v, want ErrNoStep", err)
	}
}

func TestTargetUnmountedHierarchy(t *testing.T) {
	stepd := "9:pids:/slurm/uid_5/job_7\n"
	if _, err := target([]byte(stepd), "7", "0", false, parseMounts([]byte(hybridMountinfo)), all); err == nil {
		t.Fatal("a hierarchy the daemon does not see was accepted")
	}
}

// A cgroup namespace's mount shows a subtree: paths outside it are refused.
func TestMountRoot(t *testing.T) {
	m := mountPoint{root: "/slurm", at: "/cg"}
	if d, ok := m.dir("/slurm/uid_1/job_2"); !ok || d != "/cg/uid_1/job_2" {
		t.Fatalf("dir %q %v", d, ok)
	}
	if _, ok := m.dir("/slurmx/job_2"); ok {
		t.Fatal("a sibling of the mount's root was accepted")
	}
}

// A user's process is placed where it is, in each hierarchy the daemon sees.
func TestProcessTarget(t *testing.T) {
	got := processTarget([]byte("6:freezer:/slurm_node1/uid_5/job_7/step_0\n9:pids:/user.slice\n0::/user.slice/user-5.slice/session-3.scope\n"), parseMounts([]byte(hybridMountinfo)))
	want := []string{"/sys/fs/cgroup/freezer/slurm_node1/uid_5/job_7/step_0", "/sys/fs/cgroup/unified/user.slice/user-5.slice/session-3.scope"}
	if !reflect.DeepEqual(got.Dirs, want) {
		t.Fatalf("dirs %q, want %q", got.Dirs, want)
	}
}

func TestUnescape(t *testing.T) {
	if got := unescape(`/a\040b\`); got != `/a b\` {
		t.Fatalf("%q", got)
	}
}

// Join really moves a process (as root, on a host with a writable v1
// freezer hierarchy, as the test cluster's).
func TestJoinMovesProcess(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ms, err := ReadMounts()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := ms.mountOf("freezer", false)
	if !ok {
		t.Skip("no cgroup v1 freezer hierarchy")
	}
	dir := filepath.Join(m.at, "podman-hpc-test-"+strconv.Itoa(os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skip(err)
	}
	orig, _ := os.ReadFile("/proc/self/cgroup")
	defer func() {
		// Back to where the test started, then remove the test's cgroup.
		for _, l := range strings.Split(string(orig), "\n") {
			if f := strings.SplitN(l, ":", 3); len(f) == 3 && f[1] == "freezer" {
				if d, ok := m.dir(f[2]); ok {
					os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0)
				}
			}
		}
		os.Remove(dir)
	}()
	if err := (Target{Dirs: []string{dir}}).Join(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if !strings.Contains(string(procs), strconv.Itoa(os.Getpid())) {
		t.Fatalf("cgroup.procs %q lacks pid %d", procs, os.Getpid())
	}
}
