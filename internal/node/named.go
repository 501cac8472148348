package node

import (
	"context"
	"fmt"
	"sync"

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

// forStep returns the container a step's tasks join, and whether the step
// owns it (it goes when the step ends). A named container outlives its
// step, keeping its writes, until its job ends; pyxis's modes:
//
//	auto     attach if it exists, else create it
//	create   create it; an error if it exists
//	exec     attach; an error if it does not exist
//	no_exec  a new container of the step's own, over its filesystem
//
// Attaching hands out the namespaces while the manager holds the container:
// one being removed is either still whole or gone, never half (pyxis#181).
func (m *manager) forStep(ctx context.Context, req *wire.ContainerRequest, progress func(string)) (*container, bool, error) {
	if req.Name == "" {
		c, err := m.create(ctx, req, stepID(req), nil, progress)
		return c, true, err
	}
	id := namedID(req)
	unlock := m.lockName(id)
	defer unlock()
	m.mu.Lock()
	nc := m.containers[id]
	m.mu.Unlock()
	flag := fmt.Sprintf("--container-name=%s:%s", req.Name, req.NameMode)
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
	}
	switch {
	case nc == nil:
		// Its writes are its point: a named container is writable.
		r := *req
		r.Writable = true
		c, err := m.create(ctx, &r, id, nil, progress)
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
		c, err := m.revive(ctx, &r, nc, progress)
		if err != nil {
			return nil, false, err
		}
		c.named = true
		nc = c
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
		c, err := m.create(ctx, req, stepID(req), nc, progress)
		return c, true, err
	}
	return nc, false, nil
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
