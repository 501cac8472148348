package node

// A job's later steps join the container an earlier step of the job made on
// the node (issue 26): a batch script's hundreds of short steps with one
// image then cost a request and the tasks' setns each, not a container's
// start and removal.
//
// A step joins a kept container only where nothing it could observe differs
// from a fresh one's:
//   - the whole request is equal but for the step's id (reuseKey: a field
//     added to wire.ContainerRequest counts unless reuseKey drops it), so
//     the same image reference, mounts, workdir, environment options,
//     unshare, hooks and modules, the step variables they read
//     (GPUs, PMIx, HOME) and the account;
//   - never a writable root (pyxis gives each step a fresh one), a save,
//     the image's entrypoint (it runs once per container), remap-root (its
//     tasks may hold capabilities in the container's namespaces), a named
//     container (its own rules, named.go) or a batch, extern or
//     interactive step;
//   - the command too where a hooks.d hook matches on commands, and never
//     where one may match on the step's id; never where the pmi module
//     binds a step's own directories (pmi_dirs with %s) that exist for
//     either step (MPI steps under mpi/pmix);
//   - what the request names still is what the container has: the image's
//     digest (a reference without one is resolved as a fresh container's
//     would be), the sources of the user's binds and home (the same files),
//     and the job (its cgroups: a job id reused later is another job);
//   - the same job and user, always.
//
// A kept container's init sits in the job's cgroups (stepcgroup, wholeJob),
// where Slurm would not end it with its first step. It ends with the job
// (EndJob, the plugin's epilog), or reuse_idle after its last step ends,
// whichever is first; a restarted daemon adopts it as it was (adopt.go).
// What it keeps between steps: its /tmp and --container-mounts tmpfs
// mounts, as bare-metal steps share the node's /tmp; no process (each
// step's tasks are in the step's cgroup, and Slurm ends them with it).

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/hooks"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// maxKeptPerJob bounds the containers one job keeps on a node: a job whose
// steps differ each time (another HOME, other GPUs) would otherwise keep one
// per step, each with its mounts and init, for reuse_idle.
const maxKeptPerJob = 8

// keptContainers are the step containers kept for the job's next steps.
type keptContainers struct {
	idle  time.Duration         // reuse_idle; 0: none is kept
	byKey map[string]*container // the one a step of that key joins (under manager.mu)
}

// reuseState is what the manager knows of a container for its reuse.
type reuseState struct {
	// Set as its hooks and modules are prepared (hooks_run.go).
	hooksOnCommand bool     // a hooks.d hook matches on the step's command
	hooksOnStep    bool     // one may match on the step's id
	stepDirs       []string // the pmi module's patterns of a step's own directories

	// Set once kept (keep): key != "".
	key     string
	job     jobIdentity
	binds   []bindIdentity
	adopted bool            // a restarted daemon's: the previous one's steps may run in it
	running map[string]bool // the steps in it now, by id (manager.mu): JOBID.STEPID attaches
	lastEnd time.Time       // when its last step ended (manager.mu)
	timer   *time.Timer     // ends it reuse_idle after lastEnd
}

// fileID tells files apart.
type fileID struct{ Dev, Ino uint64 }

// jobIdentity is the job's cgroups, where a kept container's init is: a
// later job of the same id (ids are reused) has them made anew.
type jobIdentity struct {
	Dirs []string
	ID   fileID // of Dirs[0]
}

func (a jobIdentity) equal(b jobIdentity) bool { return slices.Equal(a.Dirs, b.Dirs) && a.ID == b.ID }

// bindIdentity is a bind's source as the container got it: the file a
// fresh container would bind must be the same one.
type bindIdentity struct {
	Src    string
	ID     fileID
	Absent bool
}

func statID(p string) (fileID, bool) {
	sx, err := statNoSync(unix.AT_FDCWD, p, 0)
	if err != nil {
		return fileID{}, false
	}
	return fileID{Dev: unix.Mkdev(sx.Dev_major, sx.Dev_minor), Ino: sx.Ino}, true
}

// reuseKey is req in canonical form for reuse: every field but the step's
// id, the registry credentials (spent once the image is there) and the
// command (compared where hooks match on it, see join). "" when req's step
// must have a container of its own.
func reuseKey(req *wire.ContainerRequest) string {
	// Under remap-root the tasks are root in the container's user namespace
	// and may be given capabilities there (a mount, a hostname), whose
	// effects would outlive their step into the next one's.
	if req.Name != "" || req.Writable || req.Save != "" || req.Entrypoint || req.RemapRoot || req.Script != "" || !regularStep(req.Step) {
		return ""
	}
	r := *req
	r.Step, r.Auth, r.Command = "", nil, ""
	b, err := json.Marshal(&r)
	if err != nil {
		return ""
	}
	return string(b)
}

// regularStep: a step srun started (0, 1, ...), not Slurm's batch, extern
// or interactive step (ids from 0xfffffff0 up), one per job.
func regularStep(step string) bool {
	n, err := strconv.ParseUint(step, 10, 32)
	return err == nil && n < 0xfffffff0
}

// pmiStepDirs are the pmi module's directory patterns that name a step's own
// (%s), when mods has it.
func pmiStepDirs(mods []hooks.Module) []string {
	var out []string
	for _, m := range mods {
		p, ok := m.(hooks.PMI)
		if !ok {
			continue
		}
		dirs := p.Dirs
		if dirs == nil {
			dirs = hooks.DefaultPMIDirs
		}
		for _, d := range dirs {
			if strings.Contains(d, "%s") {
				out = append(out, d)
			}
		}
	}
	return out
}

// stepDirPresent says whether one of patterns names an existing directory
// for req's step: a fresh container would bind it.
func stepDirPresent(patterns []string, req *wire.ContainerRequest) bool {
	if len(patterns) == 0 {
		return false
	}
	node, _ := os.Hostname()
	repl := strings.NewReplacer("%j", req.Job, "%s", req.Step, "%u", strconv.FormatUint(uint64(req.UID), 10), "%n", strings.Split(node, ".")[0], "%%", "%")
	for _, p := range patterns {
		if _, err := statNoSync(unix.AT_FDCWD, repl.Replace(p), 0); err == nil {
			return true
		}
	}
	return false
}

// immutableRef: a reference by digest names one image for good; any other
// (a tag, a file, podman://) is looked up as a fresh container would.
func immutableRef(ref string) bool {
	return strings.Contains(ref, "@sha256:") && !strings.HasPrefix(ref, "/") && !strings.Contains(ref, "://")
}

// reuseFor returns req's reuse key and the job's cgroups a container kept
// for it goes into, or "" when req's step gets a container of its own: reuse
// is off, the request is not reusable, the job keeps maxKeptPerJob already,
// or the job's cgroups are not to be had (cgroup v2 without the job's
// extern step).
func (n *Node) reuseFor(stepd stepcgroup.Proc, req *wire.ContainerRequest) (string, stepcgroup.Target, jobIdentity) {
	if n.mgr.kept.idle <= 0 {
		return "", stepcgroup.Target{}, jobIdentity{}
	}
	key := reuseKey(req)
	// An MPI step with PMIx directories of its own (the pmi module binds
	// them) neither joins nor is kept: its container goes into the step's
	// cgroups, as every step's did before reuse.
	if key == "" || stepDirPresent(pmiStepDirs(n.mgr.hooks.modules), req) || !n.mgr.mayKeep(req.Job, key) {
		return "", stepcgroup.Target{}, jobIdentity{}
	}
	if stepd.PID <= 0 {
		return key, stepcgroup.Target{}, jobIdentity{}
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return "", stepcgroup.Target{}, jobIdentity{}
	}
	t, err := stepcgroup.Of(stepd, req.Job, req.Step, true, mounts)
	if err != nil || t.Empty() {
		return "", stepcgroup.Target{}, jobIdentity{}
	}
	id, ok := statID(t.Dirs[0])
	if !ok {
		return "", stepcgroup.Target{}, jobIdentity{}
	}
	return key, t, jobIdentity{Dirs: t.Dirs, ID: id}
}

// mayKeep: the job keeps fewer than maxKeptPerJob containers, or one of key.
func (m *manager) mayKeep(job, key string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.kept.byKey[key]; ok {
		return true
	}
	k := 0
	for _, c := range m.kept.byKey {
		if c.req.Job == job {
			k++
		}
	}
	return k < maxKeptPerJob
}

// keep makes c, just made for the step of req (its owner), the container
// the job's next steps of key join, and counts that step in it. It keeps
// nothing where a hook may match on the step, or the pmi module bound the
// step's own directories, or the image's code ran before the init (a SIF's
// environment scripts, as an entrypoint: what they leave running would be
// the next step's, outside its cgroup).
func (m *manager) keep(c *container, key string, job jobIdentity) bool {
	if c.reuse.hooksOnStep || stepDirPresent(c.reuse.stepDirs, c.req) || c.runsFirst() {
		return false
	}
	var binds []bindIdentity
	for _, src := range bindSources(c.req) {
		id, ok := statID(src)
		binds = append(binds, bindIdentity{Src: src, ID: id, Absent: !ok})
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.containers[c.id] != c {
		return false
	}
	c.reuse.key, c.reuse.job, c.reuse.binds = key, job, binds
	c.reuse.running = map[string]bool{c.req.Step: true}
	c.steps = 1
	if m.kept.byKey == nil {
		m.kept.byKey = map[string]*container{}
	}
	// A container of the key made at the same time, or one a step found
	// changed (join), goes once its steps end (leave).
	m.kept.byKey[key] = c
	return true
}

// bindSources are the sources of the user's binds and home: what a fresh
// container would open anew.
func bindSources(req *wire.ContainerRequest) []string {
	var out []string
	acct, _, _ := lookupAccount(req)
	if home, ok, err := homeMount(req, acct); err == nil && ok {
		out = append(out, home.src)
	}
	for _, um := range req.Mounts {
		if !um.IsTmpfs() && !um.IsUmount() {
			out = append(out, um.Src)
		}
	}
	return out
}

// join returns the kept container of key that req's step may join, counting
// the step in it, or nil: the step then gets a container of its own.
func (m *manager) join(ctx context.Context, req *wire.ContainerRequest, key string, job jobIdentity, progress func(string)) *container {
	m.mu.Lock()
	c := m.kept.byKey[key]
	if c != nil && m.containers[c.id] != c {
		delete(m.kept.byKey, key)
		c = nil
	}
	// The key holds the job and uid; they are checked again all the same:
	// a container is only ever its own job's and user's.
	if c == nil || !c.ready || c.req.Job != req.Job || c.req.UID != req.UID || !c.reuse.job.equal(job) ||
		(c.reuse.hooksOnCommand && c.req.Command != req.Command) {
		m.mu.Unlock()
		return nil
	}
	c.steps++
	c.reuse.running[req.Step] = true
	m.mu.Unlock()
	why := m.changed(ctx, c, req, progress)
	if c.initFD <= 0 || unix.PidfdSendSignal(c.initFD, 0, nil, 0) != nil {
		// Its user killed its init: nothing holds its processes' place.
		why = "its init is gone"
	}
	if why != "" {
		m.log.Info("kept container not joined", "container", c.id, "job", req.Job, "step", req.Step, "reason", why)
		m.mu.Lock()
		if m.kept.byKey[key] == c {
			// What it was made of changed: the next step's container of
			// this key is made anew.
			delete(m.kept.byKey, key)
		}
		m.mu.Unlock()
		m.leave(context.WithoutCancel(ctx), c, req.Step)
		return nil
	}
	clear(req.Auth)
	req.Auth = nil
	return c
}

// changed says what of the container c differs from what a fresh one for
// req would have ("" for nothing): a bind's source, the image the reference
// names now. (The step's own PMIx directories keep it from asking: reuseFor.)
func (m *manager) changed(ctx context.Context, c *container, req *wire.ContainerRequest, progress func(string)) string {
	for _, b := range c.reuse.binds {
		id, ok := statID(b.Src)
		if ok == b.Absent || id != b.ID {
			return "the bind source " + b.Src + " changed"
		}
	}
	if !immutableRef(req.Image) {
		acct, cred, err := lookupAccount(req)
		if err != nil {
			return err.Error()
		}
		if !strings.HasPrefix(req.Image, "podman://") {
			acct = account{}
		}
		img, err := m.images.get(ctx, req.Image, cred, acct, req.Auth, progress)
		if err != nil {
			return "image: " + err.Error()
		}
		if img.Digest != c.img.Digest {
			return "the image is now " + img.Digest
		}
	}
	return ""
}

// leave is the end of step in the kept container c: once none runs in it,
// it waits reuse_idle for the next, or goes now if no step can join it any
// more.
func (m *manager) leave(ctx context.Context, c *container, step string) {
	m.mu.Lock()
	if c.steps > 0 {
		c.steps--
	}
	delete(c.reuse.running, step)
	idle := c.steps == 0
	current := m.kept.byKey[c.reuse.key] == c && m.containers[c.id] == c
	if idle {
		c.reuse.lastEnd = time.Now()
	}
	m.mu.Unlock()
	switch {
	case !idle:
	case !current:
		m.removeInBackground(ctx, c)
	default:
		m.armIdle(c, m.kept.idle)
	}
}

func (m *manager) armIdle(c *container, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.reuse.timer == nil {
		c.reuse.timer = time.AfterFunc(d, func() { m.expire(c) })
		return
	}
	c.reuse.timer.Reset(d)
}

// expire ends the kept container c once no step has run in it for
// reuse_idle (an adopted one: once no task of the previous daemon's steps
// is in it either).
func (m *manager) expire(c *container) {
	if c.reuse.adopted && mountNSInUseBy(c) {
		m.armIdle(c, max(m.kept.idle, staleCheckEvery))
		return
	}
	m.mu.Lock()
	if m.containers[c.id] != c || c.steps > 0 {
		m.mu.Unlock()
		return
	}
	if left := m.kept.idle - time.Since(c.reuse.lastEnd); left > 0 {
		m.mu.Unlock()
		m.armIdle(c, left)
		return
	}
	if m.kept.byKey[c.reuse.key] == c {
		delete(m.kept.byKey, c.reuse.key)
	}
	m.mu.Unlock()
	m.removeInBackground(context.Background(), c)
	m.log.Info("kept container removed: idle", "container", c.id, "job", c.req.Job, "idle", m.kept.idle)
}

// mountNSInUseBy: a process but c's init is in c's mount namespace, or
// holds it open (a slurmstepd whose step may still join).
func mountNSInUseBy(c *container) bool {
	ns, ok := mountNSOf("/proc/" + strconv.Itoa(c.initPid) + "/ns/mnt")
	return ok && (mountNSUsers(ns, c.initPid) > 0 || mountNSHeld(ns))
}

// isKept: c is kept for the job's next steps.
func (m *manager) isKept(c *container) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return c.reuse.key != ""
}

// namesStep: JOBID.STEPID name is a step that runs in the step container c
// now (a kept one: any step that joined it; else the step that made it).
func (m *manager) namesStep(c *container, name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c.reuse.key == "" {
		return c.req.Job+"."+c.req.Step == name
	}
	job, step, ok := strings.Cut(name, ".")
	return ok && job == c.req.Job && c.reuse.running[step]
}

// keptRunning is the kept container job's step runs in now, or nil. The
// caller holds m.mu.
func (m *manager) keptRunning(job, step string) *container {
	for _, c := range m.containers {
		if c.reuse.key != "" && c.req.Job == job && c.reuse.running[step] {
			return c
		}
	}
	return nil
}

// endKept forgets the job's kept containers (its end removes them).
func (m *manager) endKept(job string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, c := range m.kept.byKey {
		if c.req.Job == job {
			delete(m.kept.byKey, k)
			if c.reuse.timer != nil {
				c.reuse.timer.Stop()
			}
		}
	}
}

// keptRecord is a kept container's reuse state in its record (adopt.go).
type keptRecord struct {
	Key            string
	Job            jobIdentity
	Binds          []bindIdentity
	HooksOnCommand bool
	StepDirs       []string
}

// keptRecordOf is c's, or nil when c is not kept.
func keptRecordOf(c *container) *keptRecord {
	if c.reuse.key == "" {
		return nil
	}
	return &keptRecord{Key: c.reuse.key, Job: c.reuse.job, Binds: c.reuse.binds, HooksOnCommand: c.reuse.hooksOnCommand, StepDirs: c.reuse.stepDirs}
}

// adoptKept takes the previous daemon's kept container c (record r) over as
// kept: the job's next steps join it, and it goes reuse_idle after the
// previous daemon's steps in it end, or with the job. It returns false for
// a container that was not kept.
func (m *manager) adoptKept(c *container, r *keptRecord) bool {
	if r == nil || r.Key == "" {
		return false
	}
	c.reuse = reuseState{hooksOnCommand: r.HooksOnCommand, stepDirs: r.StepDirs, key: r.Key, job: r.Job,
		binds: r.Binds, adopted: true, lastEnd: time.Now(), running: map[string]bool{}}
	m.mu.Lock()
	if m.kept.byKey == nil {
		m.kept.byKey = map[string]*container{}
	}
	if _, taken := m.kept.byKey[r.Key]; !taken && m.kept.idle > 0 {
		m.kept.byKey[r.Key] = c
	}
	m.mu.Unlock()
	idle := m.kept.idle
	if idle <= 0 {
		// Reuse is off now: it goes once its steps end, as a step's own.
		idle = staleCheckEvery
	}
	m.armIdle(c, idle)
	return true
}
