package node

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"sync"

	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// stepID is the id of a step's own container.
func stepID(r *wire.ContainerRequest) string { return fmt.Sprintf("phpc-%s-%s", r.Job, r.Step) }

// namedID is the id of a named container: one per job and name, or with the
// admin's container_scope=global one per user and name on the node.
func namedID(r *wire.ContainerRequest) string {
	if r.Scope == "global" {
		return fmt.Sprintf("phpc-u%d-n-%s", r.UID, r.Name)
	}
	return fmt.Sprintf("phpc-%s-n-%s", r.Job, r.Name)
}

// stepName is a --container-name that names a step's own container
// (JOBID.STEPID), as pyxis users attach to a running step to debug it.
var stepName = regexp.MustCompile(`^([0-9]+)\.([0-9]+)$`)

// forStep returns the container a step's tasks join, and whether the step
// owns it (it goes when the step ends). A named container outlives its
// step, keeping its writes, until its job ends; pyxis's modes:
//
//	auto     attach if it exists, else create it
//	create   create it; an error if it exists
//	exec     attach; an error unless it exists and runs (a step of the
//	         job is in it now)
//	no_exec  a new container of the step's own, over its filesystem
//
// A name JOBID.STEPID is the running container of that step of the job
// (see forStepOf). Attaching hands out the namespaces while the manager
// holds the container: one being removed is either still whole or gone,
// never half (pyxis#181). A step that attaches counts as running in the
// container until it ends (detach).
func (m *manager) forStep(ctx context.Context, req *wire.ContainerRequest, place stepcgroup.Target, progress func(string)) (*container, bool, error) {
	if req.Name == "" {
		c, err := m.create(ctx, req, stepID(req), nil, place, progress)
		return c, true, err
	}
	if stepName.MatchString(req.Name) {
		c, err := m.forStepOf(req)
		return c, false, err
	}
	id := namedID(req)
	unlock := m.lockName(id)
	defer unlock()
	m.mu.Lock()
	nc := m.containers[id]
	running := nc != nil && !nc.parked && nc.steps > 0
	m.mu.Unlock()
	flag := nameFlag(req)
	// Job ids are reused (and a job's containers may outlive it on a node
	// whose epilog did not run): a container is only ever its user's.
	if nc != nil && nc.req.UID != req.UID {
		return nil, false, wire.OptionErrorf(flag, "a container of that name on this node belongs to another user (a previous job with this id); use another name")
	}
	switch {
	case req.NameMode == "create" && nc != nil:
		return nil, false, wire.OptionErrorf(flag, "a container of that name already exists in this job; use --container-name=%s to reuse it", req.Name)
	case req.NameMode == "exec" && nc == nil:
		return nil, false, wire.OptionErrorf(flag, "no container of that name runs in this job; create it with --container-name=%s", req.Name)
	case req.NameMode == "exec" && !running:
		return nil, false, wire.OptionErrorf(flag, "the container exists but is not running (no step runs in it now); start it with --container-name=%s", req.Name)
	}
	switch {
	case nc == nil:
		// Its writes are its point: a named container is writable.
		r := *req
		r.Writable = true
		c, err := m.create(ctx, &r, id, nil, place, progress)
		if err != nil {
			return nil, false, err
		}
		c.named = true
		nc = c
	case nc.parked:
		// A global one the user's earlier job left: its filesystem,
		// with processes of this job's.
		r := *req
		r.Writable = true
		c, err := m.revive(ctx, &r, nc, place, progress)
		if err != nil {
			return nil, false, err
		}
		c.named = true
		nc = c
	case req.NameMode != "no_exec":
		if err := sharesWanted(nc, req); err != nil {
			return nil, false, err
		}
	}
	if req.Scope == "global" {
		m.mu.Lock()
		if nc.jobs == nil {
			nc.jobs = map[string]bool{}
		}
		nc.jobs[req.Job] = true
		m.mu.Unlock()
	}
	if req.NameMode == "no_exec" {
		c, err := m.create(ctx, req, stepID(req), nc, place, progress)
		return c, true, err
	}
	m.attach(nc)
	return nc, false, nil
}

// forStepOf attaches to the running container of the step that
// --container-name=JOBID.STEPID names: a step of the asking step's job
// (and so of its user), on this node. Its filesystem goes with its step,
// so no new container is made over it (no_exec), and only its step
// creates it (create).
func (m *manager) forStepOf(req *wire.ContainerRequest) (*container, error) {
	flag := nameFlag(req)
	ids := stepName.FindStringSubmatch(req.Name)
	job, step := ids[1], ids[2]
	switch {
	case job != req.Job:
		return nil, wire.OptionErrorf(flag, "names a step of job %s, not of this job (%s); attach from a step of that job (srun --jobid=%s --overlap)", job, req.Job, job)
	case req.NameMode == "create" || req.NameMode == "no_exec":
		return nil, wire.OptionErrorf(flag, "JOBID.STEPID names a running step's container, which only attaching uses; use --container-name=%s, or another name for a container of your own", req.Name)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[stepID(&wire.ContainerRequest{Job: job, Step: step})]
	// A step that joined a kept container runs in an earlier step's
	// (reuse.go), and that step's id names a kept container only while
	// that step runs in it.
	if kc := m.keptRunning(job, step); kc != nil {
		c = kc
	} else if c != nil && c.reuse.key != "" {
		c = nil
	}
	switch {
	case c == nil || c.named:
		return nil, wire.OptionErrorf(flag, "no container of step %s runs on this node; attach while the step runs, on one of its nodes", req.Name)
	case c.req.UID != req.UID:
		return nil, wire.OptionErrorf(flag, "the container of step %s belongs to another user", req.Name)
	case !c.ready:
		// Its creation is under way: nothing in it to join yet.
		return nil, wire.OptionErrorf(flag, "the container of step %s is still starting; retry in a moment", req.Name)
	}
	if err := sharesWanted(c, req); err != nil {
		return nil, err
	}
	c.steps++
	return c, nil
}

// sharesWanted fails when req asks to unshare a namespace (--container-
// unshare) that the running container c, which the step would join,
// shares with the node: joining cannot give it one.
func sharesWanted(c *container, req *wire.ContainerRequest) error {
	for _, t := range req.Unshare {
		if slices.Contains(c.req.Unshare, t) {
			continue
		}
		n := wire.UnshareName(t)
		return wire.OptionErrorf("--container-unshare="+n, "the container %s is not in a separate %s namespace (it was started without --container-unshare=%s), and attaching cannot unshare it; leave it out, or use a new container", req.Name, n, n)
	}
	return nil
}

// nameFlag is the --container-name option as the user gave it.
func nameFlag(req *wire.ContainerRequest) string {
	return fmt.Sprintf("--container-name=%s:%s", req.Name, req.NameMode)
}

// attach counts a step that joins c: c runs (pyxis's sense, for
// NAME:exec) until the step ends (detach).
func (m *manager) attach(c *container) {
	m.mu.Lock()
	c.steps++
	m.mu.Unlock()
}

// detach is the end of a step that attach counted.
func (m *manager) detach(c *container) {
	m.mu.Lock()
	if c.steps > 0 {
		c.steps--
	}
	m.mu.Unlock()
}

// lockName serialises the steps that ask for one name: the first creates,
// the others then attach.
func (m *manager) lockName(id string) (unlock func()) {
	m.mu.Lock()
	if m.nameLocks == nil {
		m.nameLocks = map[string]*sync.Mutex{}
	}
	l, ok := m.nameLocks[id]
	if !ok {
		l = &sync.Mutex{}
		m.nameLocks[id] = l
	}
	m.mu.Unlock()
	l.Lock()
	return l.Unlock
}
