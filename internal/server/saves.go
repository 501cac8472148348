package server

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/metrics"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// A step's --container-save is done once, by whichever asks first: the
// plugin's last task on the node, as the job user (SAVE), so that srun's
// exit status and output can say that it failed; or slurmstepd at the
// step's end (END, or its connection closing), when no task could.
//
// A user may ask only for a step of theirs that saves, and only gets the
// save done sooner: the path, the file's owner and what is saved were
// settled when the step's container was made.
type saves struct {
	mu    sync.Mutex
	steps map[saveKey]*pendingSave
}

type saveKey struct{ job, step string }

type pendingSave struct {
	use  stepUse
	once sync.Once
	err  error
}

func (v *saves) add(u stepUse) {
	if u.req.Save == "" {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.steps == nil {
		v.steps = make(map[saveKey]*pendingSave)
	}
	v.steps[saveKey{u.req.Job, u.req.Step}] = &pendingSave{use: u}
}

// get returns the step's pending save if uid may ask for it.
func (v *saves) get(job, step string, uid uint32) *pendingSave {
	v.mu.Lock()
	defer v.mu.Unlock()
	ps := v.steps[saveKey{job, step}]
	if ps == nil || (uid != 0 && ps.use.req.UID != uid) {
		return nil
	}
	return ps
}

func (v *saves) remove(u stepUse) {
	v.mu.Lock()
	defer v.mu.Unlock()
	k := saveKey{u.req.Job, u.req.Step}
	if ps := v.steps[k]; ps != nil && ps.use.step == u.step {
		delete(v.steps, k)
	}
}

// save does the step's save unless it was done; either way it returns the
// save's outcome. A second caller waits for the first.
func (s *Server) save(ctx context.Context, ps *pendingSave, log *slog.Logger) error {
	ps.once.Do(func() {
		u, start := ps.use, time.Now()
		if ps.err = s.containers.Save(ctx, u.step); ps.err != nil {
			log.Warn("save failed", "container", u.step.ID, "path", u.req.Save, "err", ps.err)
			s.fail(metrics.ErrSave, u.req.UID, fmt.Sprintf("job %s step %s: %v", u.req.Job, u.req.Step, ps.err))
		} else {
			log.Info("container saved", "container", u.step.ID, "path", u.req.Save, "duration", time.Since(start))
		}
	})
	return ps.err
}

// saveNow answers SAVE: the job user's last task on the node asks for the
// step's save once the node's tasks are done, and waits for it.
func (s *Server) saveNow(ctx context.Context, p peer, m *wire.Message, log *slog.Logger) *wire.Message {
	job, _ := m.Get("job")
	step, _ := m.Get("step")
	ps := s.saves.get(job, step, p.UID)
	if ps == nil {
		log.Warn("save refused", "job", job, "step", step, "reason", "no such saving step of the caller's")
		return errorf("no step %s.%s of yours saves its container on %s", job, step, s.node)
	}
	if err := s.save(context.WithoutCancel(ctx), ps, log); err != nil {
		return errorf("%v", err)
	}
	return wire.New(wire.OK)
}
