// Package stepcgroup finds the cgroups Slurm made for a job's step and puts
// a process into them, so that Slurm tracks, limits, signals, accounts for
// and kills it as it does the step's tasks.
//
// The daemon starts each container's init (and the image's entrypoint, and
// whatever that leaves running) itself: without this they would live in the
// daemon's cgroup, outside the job's limits and out of `scontrol listpids`,
// and a step's end would not reach them. The step's cgroups are read from
// the requesting slurmstepd's own (/proc/PID/cgroup of the peer of the
// daemon's root connection, which the kernel vouches for), never from
// anything the user sets.
//
// Slurm's layouts (proctrack/cgroup, task/cgroup):
//   - cgroup v1: <prefix>/uid_U/job_J/step_S in each hierarchy Slurm uses;
//     slurmstepd itself sits in job_J (so that freezing the step leaves it
//     out). A process may sit in any cgroup of the tree.
//   - cgroup v2: <prefix>/job_J/step_S/{slurm,user/task_N}; slurmstepd is in
//     step_S/slurm. Only leaves hold processes: Slurm puts a step's processes
//     that are no task in step_S/user/task_special, and so does this package.
//
// Where slurmstepd is in no job's cgroup (proctrack/linuxproc or pgid), Slurm
// tracks nothing by cgroup and Of returns no Target: the caller has nothing
// to join.
package stepcgroup

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Slurm's special step ids (slurm.h) and the names its cgroups give them.
var specialSteps = map[string]string{
	"4294967291": "batch",       // SLURM_BATCH_SCRIPT
	"4294967292": "extern",      // SLURM_EXTERN_CONT
	"4294967290": "interactive", // SLURM_INTERACTIVE_STEP
}

// StepDir is the name of step's cgroup directory: step_0, step_batch...
func StepDir(step string) string {
	if n, ok := specialSteps[step]; ok {
		return "step_" + n
	}
	return "step_" + step
}

// A Target is the set of cgroup directories (full paths under the host's
// cgroup mounts) a process goes into.
type Target struct {
	Dirs []string
}

// Empty reports whether there is nothing to join.
func (t Target) Empty() bool { return len(t.Dirs) == 0 }

// ErrNoStep is returned when slurmstepd is in a job's cgroup but the step's
// (or, for the job, a place for processes) cannot be found.
var ErrNoStep = errors.New("the step's cgroup is missing")

// Of is where a process of job's step goes, from the cgroups of slurmstepd
// (pid). With wholeJob, the process outlives the step (a named container)
// and goes to the job's level instead. mounts maps each hierarchy to where
// it is mounted (Mounts reads the daemon's).
func Of(stepd Proc, job, step string, wholeJob bool, mounts Mounts) (Target, error) {
	data, err := stepd.read("cgroup")
	if err != nil {
		return Target{}, fmt.Errorf("slurmstepd's cgroups: %w", err)
	}
	return target(data, job, step, wholeJob, mounts, dirExists)
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

// target is Of on /proc/PID/cgroup's content; exists says whether a
// directory exists (tests pass their own).
func target(procCgroup []byte, job, step string, wholeJob bool, mounts Mounts, exists func(string) bool) (Target, error) {
	var t Target
	sc := bufio.NewScanner(bytes.NewReader(procCgroup))
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		fields := strings.SplitN(sc.Text(), ":", 3)
		if len(fields) != 3 {
			continue
		}
		jobPath, ok := jobPrefix(fields[2], job)
		if !ok {
			continue
		}
		v2 := fields[0] == "0" && fields[1] == ""
		mnt, ok := mounts.mountOf(fields[1], v2)
		if !ok {
			return Target{}, fmt.Errorf("slurmstepd's cgroup %s (%s) is mounted nowhere the daemon sees", fields[2], hierarchyName(fields[1], v2))
		}
		dir, err := placeIn(mnt, jobPath, step, wholeJob, v2, exists)
		if err != nil {
			return Target{}, err
		}
		t.Dirs = append(t.Dirs, dir)
	}
	return t, sc.Err()
}

// OfProcess is where p is now, in every hierarchy the daemon sees: for a
// helper that works for a user who asked over the socket (an export from
// their shell or their job), so that it is charged where they are. A
// process can only have put itself in cgroups it may write to: the place is
// the user's own (their job's, or their session's).
func OfProcess(p Proc, uid uint32, mounts Mounts) (Target, error) {
	// The user's own process: a pidfd taken at connect time (a pid
	// reused since is not followed), and its uid theirs.
	owner, err := p.uid()
	if err != nil {
		return Target{}, err
	}
	if owner != uid {
		return Target{}, fmt.Errorf("pid %d is uid %d's, not the asking user's (%d): %w", p.PID, owner, uid, errGone)
	}
	data, err := p.read("cgroup")
	if err != nil {
		return Target{}, fmt.Errorf("the cgroups of pid %d: %w", p.PID, err)
	}
	return processTarget(data, mounts), nil
}

func processTarget(procCgroup []byte, mounts Mounts) Target {
	var t Target
	sc := bufio.NewScanner(bytes.NewReader(procCgroup))
	for sc.Scan() {
		fields := strings.SplitN(sc.Text(), ":", 3)
		if len(fields) != 3 {
			continue
		}
		v2 := fields[0] == "0" && fields[1] == ""
		if mnt, ok := mounts.mountOf(fields[1], v2); ok {
			if dir, ok := mnt.dir(fields[2]); ok {
				t.Dirs = append(t.Dirs, dir)
			}
		}
	}
	return t
}

// jobPrefix is p up to and including its job_<job> element.
func jobPrefix(p, job string) (string, bool) {
	elems := strings.Split(path.Clean(p), "/")
	for i, e := range elems {
		if e == "job_"+job {
			return strings.Join(elems[:i+1], "/"), true
		}
	}
	return "", false
}

// placeIn is the directory under mnt (the hierarchy's mount, for the
// cgroup at its root) for a process of the job at jobPath.
func placeIn(mnt mountPoint, jobPath, step string, wholeJob, v2 bool, exists func(string) bool) (string, error) {
	jobDir, ok := mnt.dir(jobPath)
	if !ok {
		return "", fmt.Errorf("slurmstepd's cgroup %s is outside the daemon's view of its hierarchy (%s)", jobPath, mnt.root)
	}
	var dir string
	switch {
	case !v2 && wholeJob:
		dir = jobDir
	case !v2:
		dir = filepath.Join(jobDir, StepDir(step))
	case wholeJob:
		// v2 keeps processes out of job_J itself: the job's extern step
		// (PrologFlags=Contain) is the one that lasts as long as the job.
		dir = filepath.Join(jobDir, StepDir("4294967292"), "user", "task_special")
	default:
		dir = filepath.Join(jobDir, StepDir(step), "user", "task_special")
	}
	if exists(dir) {
		return dir, nil
	}
	if v2 && exists(filepath.Dir(dir)) {
		// task_special is made on first use, by Slurm or here: the
		// parent's controllers are the step's.
		if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
			return "", fmt.Errorf("%w: %v", ErrNoStep, err)
		}
		return dir, nil
	}
	if v2 && wholeJob {
		return "", fmt.Errorf("%w: %s (a named container needs the job's extern step under cgroup v2: PrologFlags=Contain)", ErrNoStep, dir)
	}
	return "", fmt.Errorf("%w: %s", ErrNoStep, dir)
}

func hierarchyName(controllers string, v2 bool) string {
	if v2 {
		return "cgroup2"
	}
	return controllers
}

// Join moves pid (its whole thread group) into every directory of t.
func (t Target) Join(pid int) error {
	for _, d := range t.Dirs {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("put pid %d into the step's cgroup %s: %w", pid, d, err)
		}
	}
	return nil
}

// Release removes what Slurm could not while a process of t's was in it:
// under cgroup v1 a named container's init sits in the job's own cgroup,
// so Slurm's removal of job_J at the job's end fails and leaves it behind.
// Call it once that process is gone; a directory still in use (another
// container, a step) stays (the kernel refuses to remove it).
func (t Target) Release() {
	for _, d := range t.Dirs {
		if strings.HasPrefix(filepath.Base(d), "job_") {
			os.Remove(d)
		}
	}
}
