package node

import (
	"fmt"

	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// cgroupMounts are the daemon's cgroup hierarchies (read once).
var cgroupMounts = stepcgroup.DaemonMounts

// stepPlace is where the container a step makes goes: the step's cgroups
// (a named container's outlives the step: the job's), from those of the
// slurmstepd that asked. Nothing where Slurm tracks no cgroups (stepd 0,
// or proctrack/linuxproc): the container then stays in the daemon's.
func (n *Node) stepPlace(stepd stepcgroup.Proc, req *wire.ContainerRequest) (stepcgroup.Target, error) {
	if stepd.PID <= 0 {
		return stepcgroup.Target{}, nil
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return stepcgroup.Target{}, err
	}
	t, err := stepcgroup.Of(stepd, req.Job, req.Step, req.Name != "", mounts)
	if err != nil {
		return t, fmt.Errorf("job %s step %s: %w; is slurmstepd (pid %d) still there?", req.Job, req.Step, err, stepd.PID)
	}
	return t, nil
}

// savePlace is where the step's --container-save runs: at the step's end,
// when Slurm may have removed the step's cgroups, so in the job's (under
// cgroup v2, its extern step's; without one, the step's own, place).
func (n *Node) savePlace(stepd stepcgroup.Proc, req *wire.ContainerRequest, place stepcgroup.Target) stepcgroup.Target {
	if req.Save == "" || place.Empty() {
		return place
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return place
	}
	t, err := stepcgroup.Of(stepd, req.Job, req.Step, true, mounts)
	if err != nil || t.Empty() {
		return place
	}
	return t
}
