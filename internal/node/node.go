// Package node is the node's containers and images: what podman-hpcd does
// for a step, a job, a user and an admin, behind a small API that the
// socket server (internal/server) calls.
//
// It owns a container's whole life (root filesystem, mounts, OCI spec,
// start, attach, save, removal), named and global containers, the image
// store (pkg/image/store) as containers use it, and the images' squashfs
// mounts that containers share. It promises:
//
//   - a container that fails to start leaves nothing behind (mounts,
//     bundle, pins), and one that ends takes its processes with it;
//   - every path the user names is opened as the user (asuser.go), and root
//     never creates or follows anything in a directory the user can write;
//   - a named container is only ever its own user's;
//   - a writable container writes only into a file system of its own in
//     writable_dir (writable.go), of writable_size, gone with it; a user's
//     writable containers on the node reserve at most writable_max_per_user;
//   - removing or pruning images first drops the image mounts that only
//     linger (RemoveImage, Prune): a lingering mount pins its image;
//   - a previous daemon's containers whose init runs are adopted at Open
//     (attachable, listed, removed with their job or step); what else it
//     left is cleaned, once its tasks are gone.
//
// Errors about one of the user's options are *wire.OptionError; those of
// hooks and modules say what they are about themselves (HookError).
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/internal/metrics"
	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/asuser"
	"github.com/podman-hpc/podman-hpc/pkg/charge"
	"github.com/podman-hpc/podman-hpc/pkg/image/store"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// Options are what Open needs.
type Options struct {
	Config config.Config
	Log    *slog.Logger
	// WidenAfter, when set, is called as each pull starts, and what it
	// returns once the pull is done: podman-hpcd gives a pull that runs
	// past d every CPU (cmd/podman-hpcd's GOMAXPROCS policy).
	WidenAfter func(d time.Duration) (done func())
	// Metrics count the node's pulls, cache and containers (nil: none).
	Metrics *metrics.Metrics
}

// Node is the node's image cache and containers. Its methods are safe for
// concurrent use.
type Node struct {
	log    *slog.Logger
	store  *squashStore
	mounts *imageMounts
	mgr    *manager // nil when the node cannot run containers
	cfg    config.Config
	// preflight is Open's check of the node (nil: the image cache did
	// not open, and nothing was checked).
	preflight *Report
	pins      jobPins
	// squashes: one export or save per user at a time (squash_bounds.go).
	squashes userSquashes
}

// Open opens the image cache, cleans what a previous daemon left in the
// state directory, checks the node's features (Preflight) and keeps the
// OCI runtime that passed. It returns (nil, err)
// when the image cache cannot be opened; (n, err) with n serving images
// only (no container) when the node cannot run containers; (n, nil) when it
// can do both. The caller calls Close.
func Open(ctx context.Context, o Options) (*Node, error) {
	cfg, log := o.Config, o.Log
	images, err := openImageStore(ctx, cfg, log, o.Metrics)
	if err != nil {
		log.Error("image cache", "err", err)
		return nil, err
	}
	images.widenAfter = o.WidenAfter
	if cfg.UserPathTimeout > 0 {
		asuser.Timeout = cfg.UserPathTimeout // one daemon a process
	}
	n := &Node{log: log, store: images, mounts: newImageMounts(cfg.ImageLinger, images.pin, log), cfg: cfg}
	// Traversable (see create: a remapped root reaches the root file
	// system as the user), never listable.
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return n, fmt.Errorf("state directory: %w", err)
	}
	if err := os.Chmod(cfg.StateDir, 0o711); err != nil {
		return n, fmt.Errorf("state directory: %w", err)
	}
	// The previous daemon's containers whose init runs are adopted, their
	// mounts kept; the others' go.
	keep := adoptable(cfg.StateDir)
	unmounted := unmountStale(cfg.StateDir, keep, log)
	// Every feature a container needs, tried as a job uses it: a node
	// that passed an empty-root probe and then failed every job was a
	// black hole (issue 24).
	n.preflight = Preflight(ctx, cfg, log)
	if err := n.preflight.Err(); err != nil {
		log.Error("node cannot run containers; podman-hpcd preflight lists its checks", "err", err)
		return n, err
	}
	rt := n.preflight.rt
	n.mgr = newManager(log, rt, images, n.mounts, images.cache.Scratch(), cfg)
	if err := n.mgr.writes.open(); err != nil {
		n.mgr = nil
		log.Error("node cannot run containers", "err", err)
		return n, err
	}
	n.mgr.cleanStale(ctx, unmounted, keep)
	log.Info("containers ready", "runtime", rt.Command, "runtime_args", strings.Join(rt.Args, " "), "runtime_own_mount_namespace", rt.NS != nil, "state_dir", cfg.StateDir, "cache_dir", cfg.CacheDir, "writable_dir", cfg.WritableDir, "writable_size", cfg.WritableSize)
	return n, nil
}

// Preflight returns Open's check of the node's features: why it cannot run
// containers, or that it can.
func (n *Node) Preflight() *Report { return n.preflight }

// Close closes the image cache. Containers are left as they are: their
// tasks keep running, and the next daemon's Open removes them once those
// are gone.
func (n *Node) Close() error { return n.store.cache.Close() }

// errNoContainers is the containers' methods' error on a node that Open
// found unable to run them.
var errNoContainers = errors.New("this node cannot run containers")

// Step is a step's use of a container, from Step to End: what its tasks
// need to join it. The caller must not change it.
type Step struct {
	ID       string // the container's id (phpc-JOB-STEP, or a named one's)
	Attached bool   // a named or kept container the step joined: End leaves it
	// Kept: the container stays for the job's next steps (reuse.go),
	// whether this step made it or joined it.
	Kept    bool
	Digest  string // the image's
	Workdir string // where the tasks start
	Env     []string
	// Namespaces are the namespaces the tasks join, in the order they
	// join them (the mount namespace last), named in NamespaceNames
	// ("user", "ipc", "uts", "net", "mnt"). They are the container's:
	// valid until End, and not to be closed.
	Namespaces     []*os.File
	NamespaceNames []string
	// OwnUserNS: the user namespace is the tasks' own, not the
	// container's, and its mount namespace a copy of the container's with
	// every mount locked (nest.go): a task may keep its capabilities there.
	OwnUserNS bool
	// EntrypointLog is the image entrypoint's output, when it ran.
	EntrypointLog string

	c   *container
	req *wire.ContainerRequest
	// savePlace is where --container-save's mksquashfs goes: the job's
	// cgroups, which outlive the step's end, when the save runs.
	savePlace stepcgroup.Target
}

// Step gets the step of req its container: a new one of its own, the
// named container it names (pyxis's modes, see forStep), or the one an
// earlier step of the job made with the same image and options (reuse.go),
// started from the image (pulled if needed, as the user, with progress
// lines for the user).
// req is the container's from then on: the caller must not change it.
// stepd is the slurmstepd that asked (the kernel's word: its pid and a
// pidfd): a container it makes goes into that step's cgroups (stepcgroup),
// so that Slurm tracks, limits and ends it; PID 0 for none.
func (n *Node) Step(ctx context.Context, req *wire.ContainerRequest, stepd stepcgroup.Proc, progress func(string)) (*Step, error) {
	if n.mgr == nil {
		return nil, errNoContainers
	}
	// A step the job's kept container serves joins it; one that may be
	// served later makes it in the job's cgroups (reuse.go).
	stepPlace, err := n.stepPlace(stepd, req)
	if err != nil {
		return nil, err
	}
	// The step's helpers (podman save for podman://) are the step's too,
	// wherever its container goes.
	if !stepPlace.Empty() {
		ctx = charge.With(ctx, stepPlace.Join)
	}
	place := stepPlace
	key, jobPlace, job := n.reuseFor(stepd, req)
	if key != "" {
		if c := n.mgr.join(ctx, req, key, job, progress); c != nil {
			return &Step{ID: c.id, Attached: true, Kept: true, Digest: c.img.Digest,
				Workdir: firstNonEmpty(req.Workdir, c.workdir), Env: c.env,
				Namespaces: c.nsFiles, NamespaceNames: c.nsNames, c: c, req: req, savePlace: stepPlace}, nil
		}
		place = jobPlace
	}
	c, owned, err := n.mgr.forStep(ctx, req, place, progress)
	if err != nil {
		return nil, err
	}
	kept := key != "" && owned && n.mgr.keep(c, key, job)
	// What a restarted daemon adopts (adopt.go); a global container's
	// jobs change as they join.
	n.mgr.persist(c)
	if !owned && (c.req.Job != req.Job || c.req.Step != req.Step) {
		for _, opt := range ignoredWhenAttaching(req, c.req) {
			progress(fmt.Sprintf("ignoring %s: the container %q exists already, and this is set only when it is made", opt, req.Name))
		}
	}
	return &Step{
		ID: c.id, Attached: !owned, Kept: kept, Digest: c.img.Digest,
		Workdir: firstNonEmpty(req.Workdir, c.workdir), Env: c.env,
		Namespaces: c.nsFiles, NamespaceNames: c.nsNames, OwnUserNS: c.nestPid != 0, EntrypointLog: c.entrypointLog,
		c: c, req: req, savePlace: n.savePlace(stepd, req, place),
	}, nil
}

// Save writes the step's container as a squashfs at its --container-save
// path, as the step's user (see manager.save). It does nothing for a step
// that did not ask.
func (n *Node) Save(ctx context.Context, s *Step) error {
	if s.req.Save == "" {
		return nil
	}
	// The step's end waits for the user's export or other save: its
	// save is what they asked for.
	release, err := n.squashes.take(ctx, s.req.UID, true)
	if err != nil {
		return err
	}
	defer release()
	if !s.savePlace.Empty() {
		ctx = charge.With(ctx, s.savePlace.Join)
	}
	return n.mgr.save(ctx, s.c, s.req, n.squashLimits())
}

// End ends the step's use of its container: the step's own goes (at the
// lowest priority: nobody waits for it), a named one stays for its job (no
// longer running, in pyxis's sense, once no step is in it).
func (n *Node) End(ctx context.Context, s *Step) {
	// A kept container, joined or attached to (JOBID.STEPID), waits for
	// the job's next step once none runs in it.
	if s.Kept || n.mgr.isKept(s.c) {
		n.mgr.leave(ctx, s.c, s.req.Step)
		return
	}
	if s.Attached {
		n.mgr.detach(s.c)
		return
	}
	n.mgr.removeInBackground(ctx, s.c)
}

// Notes returns the lines for the user about the step's container as its
// tasks end: that its writable root is full, so that their writes past it
// failed. None when all is well.
func (n *Node) Notes(s *Step) []string {
	if note := layerNote(s.c, n.cfg.WritableSize); note != "" {
		return []string{note}
	}
	return nil
}

// Container is one of the node's containers, as ps shows it.
type Container struct {
	ID      string
	Name    string // a named container's name; "" for a step's own
	Parked  bool   // a global container between jobs: no process, filesystem kept
	Job     string // the job that made it
	Step    string
	UID     uint32
	Image   string
	Created time.Time
}

// Containers returns the node's containers, by id.
func (n *Node) Containers() []Container {
	if n.mgr == nil {
		return nil
	}
	var out []Container
	for _, c := range n.mgr.list() {
		ct := Container{ID: c.id, Parked: c.parked, Job: c.req.Job, Step: c.req.Step, UID: c.req.UID, Image: c.req.Image, Created: c.created}
		if c.named {
			ct.Name = c.req.Name
		}
		out = append(out, ct)
	}
	return out
}

// EndJob is the job's end on this node (its epilog): its containers go,
// and a global-scope container it used is parked once no running job uses
// it. It returns how many containers were removed and parked.
func (n *Node) EndJob(ctx context.Context, job string) (removed, parked int) {
	n.pins.dropJob(job)
	if n.mgr == nil {
		return 0, 0
	}
	n.mgr.endKept(job)
	return n.mgr.endJob(ctx, job)
}

// RemoveGlobal removes uid's container_scope=global named container name,
// unless a running job uses it; it returns how many went (0 or 1). The
// caller has checked that the asker may act for uid.
func (n *Node) RemoveGlobal(ctx context.Context, uid uint32, name string) (int, error) {
	if n.mgr == nil {
		return 0, nil
	}
	return n.mgr.removeGlobal(ctx, uid, name)
}

// PullRequest is a user's pull.
type PullRequest struct {
	UID, GID uint32
	Auth     []byte       // the user's auth.json, or nil
	Progress func(string) // lines for the user, or nil
	// Home is the user's home (for podman://), as their client says:
	// podman runs as the user, so it reaches nothing more for a lie.
	Home string
}

// Pull pulls ref into the cache as the user, asking the registry what the
// tag is now (an explicit pull does not trust tag_ttl).
func (n *Node) Pull(ctx context.Context, ref string, r PullRequest) (*store.Image, error) {
	// No name is needed to pull: a user the daemon's /etc/passwd lacks
	// (LDAP, SSSD) pulls with their uid and gid, their other groups unknown.
	acct, cred, err := lookupAccount(&wire.ContainerRequest{UID: r.UID, GID: r.GID})
	if err != nil {
		cred = credential{UID: r.UID, GID: r.GID}
	}
	o := pullOptions(ref, cred, r.Auth, r.Progress)
	o.Refresh, o.Home, o.User = true, r.Home, acct.Name
	return n.store.pull(ctx, ref, o)
}

// PinForJob returns ref pinned to one digest for the job (store.Cache.PinFor):
// asked of the registry at the job's first use on this node, the same
// answer for the job's later uses here ("" for a reference that names
// no registry image). job "" pins without remembering.
func (n *Node) PinForJob(ctx context.Context, job, ref string, r PullRequest) (string, error) {
	k := jobPinKey{job: job, uid: r.UID, ref: ref}
	if job != "" {
		if p, ok := n.pins.get(k); ok {
			return p, nil
		}
	}
	p, err := n.store.cache.PinFor(ctx, ref, store.PullOptions{UID: r.UID, GID: r.GID, AuthJSON: r.Auth})
	if err != nil {
		return "", err
	}
	if job != "" {
		n.pins.put(k, p)
		// Two first uses at once: the first to finish wins for both.
		p, _ = n.pins.get(k)
	}
	n.log.Info("tag pinned for the job", "job", job, "uid", r.UID, "ref", ref, "pinned", p)
	return p, nil
}

// Images returns the cached images uid may see (root: all).
func (n *Node) Images(uid uint32) []store.Image { return n.store.cache.List(uid) }

// RemoveImage removes ref from the cache for uid (store.Cache.Remove),
// after dropping the image mounts that only linger (uid's own: dropIdleMounts).
func (n *Node) RemoveImage(ref string, uid uint32) error {
	n.dropIdleMounts(uid)
	return n.store.cache.Remove(ref, uid)
}

// Prune evicts by the cache's limits, or every unused image (all), for uid
// (store.Cache.Prune), after dropping the image mounts that only linger
// (uid's own: dropIdleMounts); it returns the images that went.
func (n *Node) Prune(ctx context.Context, all bool, uid uint32) ([]store.Image, error) {
	n.dropIdleMounts(uid)
	return n.store.cache.Prune(ctx, all, uid)
}

// dropIdleMounts unmounts the images that linger without containers
// (imageMounts), which keeps them pinned: removing an image asks for the
// space more than for a warm start. Root's drops them all; a user's only
// those of images no one else uses (store.Cache.SoleUser): another user's
// next step stays warm, and their images' LAST USED stays theirs.
func (n *Node) dropIdleMounts(uid uint32) {
	if k := n.mounts.dropIdle(func(d string) bool { return n.store.cache.SoleUser(d, uid) }); k > 0 {
		n.log.Info("lingering image mounts dropped", "images", k, "uid", uid)
	}
}

// PruneEvery evicts by the cache's limits every period until ctx is done.
func (n *Node) PruneEvery(ctx context.Context, period time.Duration) {
	n.store.pruneEvery(ctx, period, n.log)
}
