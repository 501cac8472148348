package node

import (
	"context"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// EndedJobsDir is where the plugin's job epilog records the end of a job
// it could not tell the daemon about (the daemon down at that moment: an
// upgrade, a crash), beside the daemon's socket: one empty file per job,
// named by its id. Without it, a job's named container adopted by the next
// daemon would outlive its job (its init sits in the job's cgroup, not a
// step's, so Slurm does not end it).
func EndedJobsDir(socket string) string {
	return filepath.Join(filepath.Dir(socket), "ended-jobs")
}

// EndRecordedJobs ends (EndJob) each job recorded in dir and removes its
// record. The directory is root's: one that is not (or a symlink) is left
// alone.
func (n *Node) EndRecordedJobs(ctx context.Context, dir string) {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o022 != 0 {
		return
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if _, err := strconv.ParseUint(e.Name(), 10, 32); err != nil {
			continue
		}
		removed, parked := n.EndJob(ctx, e.Name())
		n.log.Info("ended a job its epilog could not tell", "job", e.Name(), "removed", removed, "parked", parked)
		os.Remove(filepath.Join(dir, e.Name()))
	}
}
