package node

import (
	"context"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// stop ends c's processes: the runtime kills its init (its PID namespace,
// and with it whatever the image's entrypoint left running there, goes
// too) and deletes its state. Its mounts and bundle stay. Safe to call
// twice.
func (m *manager) stop(ctx context.Context, c *container, background bool) {
	if c.parked {
		return
	}
	closeAll(c.nsFiles)
	c.nsFiles, c.nsNames = nil, nil
	if err := m.rt.Delete(ctx, c.id, oci.DeleteOpts{Force: true, Pidfd: c.initFD, Background: background}); err != nil {
		m.log.Warn("runtime delete", "container", c.id, "err", err)
	}
	if c.initFD > 0 {
		unix.Close(c.initFD)
	}
	c.initFD, c.initPid, c.nestPid = 0, 0, 0 // the holder ended with the init's PID namespace
	// Its init is gone (Delete awaits it): the job's cgroup it held can go.
	c.place.Release()
	if c.output != nil {
		c.output.Close()
	}
	m.hooks.logTimings(c, m.log.With("job", c.req.Job, "step", c.req.Step)) // poststop
}

// endJob is the job's end on this node (its epilog): its containers go,
// and a global-scope container it used is parked once no running job uses
// it. It returns how many containers were removed and parked.
func (m *manager) endJob(ctx context.Context, job string) (removed, parked int) {
	for _, c := range m.list() {
		if c.req.Scope != "global" || !c.named {
			if c.req.Job == job {
				m.remove(ctx, c)
				removed++
			}
			continue
		}
		unlock := m.lockName(c.id)
		m.mu.Lock()
		delete(c.jobs, job)
		idle := len(c.jobs) == 0 && !c.parked && m.containers[c.id] == c
		m.mu.Unlock()
		if idle {
			// Nothing of the container runs past its jobs; its
			// filesystem waits for the user's next one.
			m.stop(ctx, c, false)
			c.parked = true
			parked++
		}
		unlock()
	}
	return removed, parked
}

// revive runs a new container for req over a parked one's filesystem, under
// the same id; it then owns the parked one (holds). The caller holds the
// name's lock. On failure the parked container stays as it was.
func (m *manager) revive(ctx context.Context, req *wire.ContainerRequest, parked *container, place stepcgroup.Target, progress func(string)) (*container, error) {
	m.mu.Lock()
	delete(m.containers, parked.id)
	m.mu.Unlock()
	c, err := m.create(ctx, req, parked.id, parked, place, progress)
	if err != nil {
		m.mu.Lock()
		if _, taken := m.containers[parked.id]; !taken {
			m.containers[parked.id] = parked
		}
		m.mu.Unlock()
		return nil, err
	}
	c.holds = parked
	return c, nil
}

// removeGlobal removes uid's global-scope container name, unless a running
// job uses it. It returns how many went (0 or 1).
func (m *manager) removeGlobal(ctx context.Context, uid uint32, name string) (int, error) {
	id := namedID(&wire.ContainerRequest{Scope: "global", UID: uid, Name: name})
	unlock := m.lockName(id)
	defer unlock()
	m.mu.Lock()
	c := m.containers[id]
	busy := c != nil && len(c.jobs) > 0
	m.mu.Unlock()
	switch {
	case c == nil:
		return 0, fmt.Errorf("no such container on this node")
	case busy:
		return 0, fmt.Errorf("a running job uses it; it can go once that job has ended")
	}
	m.remove(ctx, c)
	return 1, nil
}
