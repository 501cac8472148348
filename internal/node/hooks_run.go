package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/pkg/hooks"
	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

// hookRunner gives containers the node's hooks.d hooks and modules.
type hookRunner struct {
	dirs    []string
	modules []hooks.Module
}

func newHookRunner(cfg config.Hooks) *hookRunner {
	return &hookRunner{dirs: cfg.Dirs, modules: cfg.Enabled()}
}

// HookError is an error of the job's hooks or modules (--container-hooks,
// hooks.d, a module's failure): its message is for the user as it is, and
// says what it is about. It is kept apart from the failure to run a hook at
// all, which is the runtime's ("start container: ...").
type HookError struct{ Err error }

func (e *HookError) Error() string { return e.Err.Error() }
func (e *HookError) Unwrap() error { return e.Err }

// prepared is what hooks and modules add to one container.
type prepared struct {
	opt oci.SpecOpt // annotations, mounts, devices, hooks, process environment
	env []string    // the tasks' environment: the image's, then the modules'
	// writesRoot: a createContainer hook may write into the root, so the
	// runtime leaves it writable; SealRoot makes it read-only once the
	// container runs.
	writesRoot bool
	notes      []string // for the user (srun's output)
	// userMounts are the modules' binds of paths the job can influence:
	// the manager opens them as the job user (hooks.Result.UserMounts).
	userMounts []specs.Mount
}

// prepare resolves the job's --container-hooks, applies the modules (which
// read the image at imageRoot), and matches the hooks.d hooks against the
// container's annotations.
func (h *hookRunner) prepare(ctx context.Context, c *container, acct account, imageRoot string, log *slog.Logger) (*prepared, error) {
	set, warnings, err := hooks.ReadDirs(h.dirs)
	for _, w := range warnings {
		log.Warn("hooks.d", "warning", w)
	}
	if err != nil {
		return nil, &HookError{fmt.Errorf("%w; ask your admin to fix it", err)}
	}
	mods, names, err := hooks.Resolve(c.req.Hooks, h.modules, set.Names())
	if err != nil {
		return nil, &HookError{err}
	}
	// What hooks.d files match on, as podman's --annotation would give them.
	ann := map[string]string{
		"org.podman-hpc.job": c.req.Job, "org.podman-hpc.step": c.req.Step,
		"org.podman-hpc.user": acct.Name, "org.podman-hpc.uid": fmt.Sprint(c.req.UID),
		"org.podman-hpc.image": c.req.Image, "org.podman-hpc.hooks": strings.Join(names, ","),
	}
	for _, n := range names {
		ann["org.podman-hpc.hook."+n] = "true"
	}
	p := &prepared{}
	// What of the step decides this container's hooks and modules, beyond
	// what it is made of: whether another step may join it (reuse.go).
	c.reuse.hooksOnCommand, c.reuse.hooksOnStep = set.StepDependence("org.podman-hpc.step")
	c.reuse.stepDirs = pmiStepDirs(mods)
	node, _ := os.Hostname()
	req := hooks.Request{Job: c.req.Job, Step: c.req.Step, UID: c.req.UID, Node: strings.Split(node, ".")[0],
		HostRoot: "/", ImageRoot: imageRoot, Env: c.req.Env, Writable: c.req.Writable}
	var results []hooks.Result
	var stageHooks []hooks.Matched
	envs := [][]string{}
	for _, m := range mods {
		start := time.Now()
		res, err := m.Apply(ctx, req)
		if err != nil {
			log.Warn("module failed", "module", m.Name(), "err", err, "duration", time.Since(start))
			return nil, &HookError{err}
		}
		log.Info("module", "module", m.Name(), "added", res.Summary, "duration", time.Since(start))
		results = append(results, res)
		envs = append(envs, res.Env)
		p.userMounts = append(p.userMounts, res.UserMounts...)
		p.notes = append(p.notes, res.Notes...)
		stageHooks = append(stageHooks, hooks.FromSpec(m.Name()+" module", res.Hooks)...)
	}
	matched, skipped, err := set.Select(hooks.Match{Annotations: ann, Command: c.req.Command, HasBindMounts: len(c.req.Mounts) > 0})
	if err != nil {
		return nil, &HookError{err}
	}
	for _, s := range skipped {
		log.Warn("hooks.d: stage run by podman only, skipped", "hook", s.Name, "stage", s.Stage)
	}
	stageHooks = append(stageHooks, matched...)
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var final []hooks.Matched
	for _, m := range stageHooks {
		log.Info("hook matched", "hook", m.Name, "stage", m.Stage, "path", m.Hook.Path)
		m.Hook = hooks.Timed(m, self, filepath.Join(c.bundle, "hooks.log"))
		final = append(final, m)
		p.writesRoot = p.writesRoot || (m.Stage == "createContainer" && !c.req.Writable)
	}
	p.env = hooks.MergeEnv(c.img.Env, envs...)
	p.opt = func(s *specs.Spec) error {
		if err := oci.WithAnnotations(ann)(s); err != nil {
			return err
		}
		for _, r := range results {
			if err := oci.WithMounts(r.Mounts...)(s); err != nil {
				return err
			}
			if err := oci.WithDevices(r.Devices, r.DeviceRules)(s); err != nil {
				return err
			}
		}
		// Hooks see the tasks' environment, as under podman.
		s.Process.Env = p.env
		return hooks.AddToSpec(s, final)
	}
	return p, nil
}

// logTimings logs the hooks that ran since the last call; log names the
// job and step.
func (h *hookRunner) logTimings(c *container, log *slog.Logger) {
	timings, off := hooks.ReadTimings(filepath.Join(c.bundle, "hooks.log"), c.hooksLogged)
	c.hooksLogged = off
	for _, t := range timings {
		lvl := slog.LevelInfo
		if t.Exit != 0 {
			lvl = slog.LevelWarn
		}
		log.Log(context.Background(), lvl, "hook ran", "container", c.id, "hook", t.Name, "stage", t.Stage, "exit", t.Exit, "duration", t.Duration)
	}
}
