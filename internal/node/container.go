package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// initPath is where podman-hpc-init (initBinary) appears inside every
// container, as the container's init: a process that only waits, holding
// the namespaces that the tasks join. The image need not have anything.
const initPath = wire.ReservedDir + "/init"

// image is what a container needs of a cached image.
type image struct {
	Digest     string
	Path       string // the squashfs file
	Env        []string
	Entrypoint []string
	WorkingDir string
	// Apptainer: a SIF's root, whose /.singularity.d/env/*.sh every
	// container sources before the tasks start (apptainer.go).
	Apptainer bool `json:",omitempty"`
}

// imageStore turns a reference into a cached squashfs (pkg/image/store).
type imageStore interface {
	// get returns the image, pulling it if needed, as the user, with the
	// user's registry credentials (auth.json, may be nil); acct's name
	// and home are where podman:// finds their storage ("": unknown).
	get(ctx context.Context, ref string, cred credential, acct account, auth []byte, progress func(string)) (*image, error)
	// pin keeps the image from eviction until release is called.
	pin(digest string) (release func(), err error)
}

// container is one running container: one per node per step.
type container struct {
	id      string
	req     *wire.ContainerRequest
	img     *image
	bundle  string
	rootfs  string
	initPid int
	initFD  int               // pidfd of the init (0: none): teardown kills it through this
	place   stepcgroup.Target // the step's (or, named, the job's) cgroups its init goes into
	nsFiles []*os.File        // the namespaces the tasks join, sent to the plugin
	nsNames []string          // their names, in the same order
	nestPid int               // the holder of the tasks' own namespaces (nest.go); 0: none
	env     []string          // the image's environment, for the tasks
	workdir string
	unpin   func()
	mounted bool // the image's squashfs mount counts this container
	// layer is a writable container's own file system, a file in
	// writable_dir (writable.go); layerDir is where the one it writes
	// into is mounted: its own, or that of the container it runs over.
	layer    string
	layerDir string
	// copied is what its copy-up holds of its user's share of state_dir
	// (copyupShares).
	copied  int64
	created time.Time
	ready   bool // made: steps may attach (under the manager's mu)

	entrypointLog string      // the image entrypoint's output, when it ran
	output        *oci.Output // the runtime's and the container's output, bounded
	named         bool        // outlives its step: removed with its job (or by rm)
	// A global-scope named container (container_scope=global) outlives
	// its jobs: jobs are those using it now; once the last ends, its
	// processes are stopped (parked) and its filesystem kept for the
	// user's next job, which runs a new container over it (holds).
	jobs   map[string]bool
	parked bool
	holds  *container
	// steps is how many steps run in the container now, having attached
	// (the manager's mu guards it): a named one "runs", in pyxis's sense
	// (NAME:exec), while one does.
	steps int

	// hooksLogged is how far the hooks' timings (bundle/hooks.log) are logged.
	hooksLogged int64
	// reuse: whether, and for which steps, it is kept (reuse.go).
	reuse reuseState
}

// manager creates and removes containers; the image mounts they share are
// mounted's.
type manager struct {
	log      *slog.Logger
	rt       *oci.Runtime
	images   imageStore
	stateDir string
	site     []wire.UserMount // admin's mounts for every container (config "mounts")
	batch    []wire.UserMount // and for batch scripts' containers ("batch_mounts")
	hooks    *hookRunner      // hooks.d and the modules
	mounted  *imageMounts
	writes   *writeSpace   // writable_dir: writable containers' file systems
	copyups  *copyupShares // state_dir: read-only containers' copy-ups
	// compression of --container-save's squashfs: the cache's.
	compression string
	// scratch holds save's and export's temporary squashfs: on the
	// cache's disk, never in state_dir's RAM (store.Cache.Scratch).
	scratch string

	mu         sync.Mutex
	containers map[string]*container
	nameLocks  map[string]*sync.Mutex // named container id -> its creation lock
	kept       keptContainers         // the step containers later steps may join (reuse.go)
}

func newManager(log *slog.Logger, rt *oci.Runtime, images imageStore, mounted *imageMounts, scratch string, cfg config.Config) *manager {
	return &manager{
		log: log, rt: rt, images: images, stateDir: cfg.StateDir, scratch: scratch, site: cfg.Mounts, batch: cfg.BatchMounts,
		compression: cfg.Compression,
		hooks:       newHookRunner(cfg.Hooks),
		mounted:     mounted,
		writes:      newWriteSpace(cfg),
		copyups:     newCopyupShares(cfg.StateDir),
		containers:  map[string]*container{},
		kept:        keptContainers{idle: cfg.ReuseIdle},
	}
}

// create makes a container and returns it running: the step's (id
// phpc-JOB-STEP), or a named one (see named). With over set, the container
// runs over over's filesystem (--container-name=NAME:no_exec) instead of
// mounting its own. On any failure everything done so far is undone.
//
// Its stages, in order: the root filesystem (rootfs), the hooks' and
// modules' additions and the mounts (mounts), the OCI spec (buildSpec), the
// start (start), and what the tasks need to join it (attachable).
func (m *manager) create(ctx context.Context, req *wire.ContainerRequest, id string, over *container, place stepcgroup.Target, progress func(string)) (c *container, err error) {
	if c, err = m.add(req, id); err != nil {
		return nil, err
	}
	c.place = place
	defer func() {
		if err != nil {
			m.remove(context.WithoutCancel(ctx), c)
		}
	}()
	acct, cred, err := lookupAccount(req)
	if err != nil {
		return c, err
	}
	if err := m.rootfs(ctx, c, over, cred, progress); err != nil {
		return c, err
	}
	log := m.log.With("job", req.Job, "step", req.Step)
	hk, err := m.hooks.prepare(ctx, c, acct, m.mounted.root(c.img.Digest), log)
	if err != nil {
		return c, err
	}
	for _, n := range hk.notes {
		progress(n)
	}
	mounts, held, err := m.mounts(c, acct, cred, hk.userMounts)
	defer closeAll(held)
	if err != nil {
		return c, err
	}
	// An attached container shares its root, and so its mode.
	readonly := !req.Writable
	if over != nil {
		readonly = !over.req.Writable
	}
	spec, err := buildSpec(m.rt, c, cred, mounts, hk, readonly)
	if err != nil {
		return c, err
	}
	if err := m.start(ctx, c, spec, hk, readonly, log); err != nil {
		return c, err
	}
	if readonly && hk.writesRoot {
		// The hooks have written into the root: the root in the user's
		// reach, in the bundle, is read-only from now on too.
		if err := m.rt.NS.Do(func() error { return oci.MakeReadOnly(c.publicRoot()) }); err != nil {
			return c, err
		}
	}
	c.env = withHome(c.env, req, acct)
	if err := c.envFits(); err != nil {
		return c, err
	}
	if err := c.attachable(ctx, spec, readonly); err != nil {
		return c, err
	}
	m.mu.Lock()
	c.ready = true
	m.mu.Unlock()
	return c, nil
}

// add enters a new container of id into the manager's table, with a fresh
// bundle path; it fails if id is taken.
func (m *manager) add(req *wire.ContainerRequest, id string) (*container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, busy := m.containers[id]; busy {
		return nil, fmt.Errorf("container %s already exists on this node", id)
	}
	bundle, err := newBundleName(filepath.Join(m.stateDir, "containers"))
	if err != nil {
		return nil, err
	}
	c := &container{id: id, req: req, bundle: bundle, created: time.Now()}
	m.containers[id] = c
	return c, nil
}

// rootfs makes the container's bundle and its root filesystem: its own
// (prepareRootfs), or over's. The user's registry credentials go once the
// image is there.
func (m *manager) rootfs(ctx context.Context, c *container, over *container, cred credential, progress func(string)) error {
	if err := makeBundle(c); err != nil {
		return err
	}
	if over != nil {
		// Its user's (forStep checked): published in c's own bundle.
		c.img, c.rootfs, c.layerDir = over.img, over.rootfs, over.layerDir
	} else if err := m.prepareRootfs(ctx, c, cred, progress); err != nil {
		return err
	}
	// The pull is done: the user's registry credentials go (the request
	// lives as long as the container).
	clear(c.req.Auth)
	c.req.Auth = nil
	return nil
}

// prepareRootfs gets the image and mounts the container's root: an overlay
// on the image's squashfs, so that mount points missing from the image can
// be made. The runtime makes it read-only (--container-readonly, the
// default); SealRoot then sets nosuid and nodev on it, which runtimes drop.
func (m *manager) prepareRootfs(ctx context.Context, c *container, cred credential, progress func(string)) (err error) {
	if c.req.Image == "" {
		return wire.OptionErrorf("--container-name="+c.req.Name, "no container of that name in this job, and no --container-image to create it")
	}
	var acct account
	if strings.HasPrefix(c.req.Image, "podman://") {
		acct, _, _ = lookupAccount(c.req) // name and home: where the user's storage is
	}
	if c.img, err = m.images.get(ctx, c.req.Image, cred, acct, c.req.Auth, progress); err != nil {
		return &ImportError{Image: c.req.Image, Err: err}
	}
	if c.unpin, err = m.images.pin(c.img.Digest); err != nil {
		return err
	}
	imageRoot, err := m.mounted.acquire(c.img)
	if err != nil {
		return err
	}
	c.mounted = true
	c.rootfs = c.private("root")
	// A read-only root's upper layer holds only mount points and what
	// userRoot copies up (bounded): it stays in the bundle's private
	// directory. A writable one's takes the user's writes: in a file
	// system of its own.
	layer, shares := c.private(""), m.copyups
	if c.req.Writable {
		if layer, err = m.writableLayer(ctx, c); err != nil {
			return err
		}
		shares = nil
	}
	upper, err := userRoot(c, imageRoot, layer, shares)
	if err != nil {
		return err
	}
	return oci.MountOverlay(c.private("lower"), upper, filepath.Join(layer, "work"), c.rootfs)
}

// withPath returns env with a PATH, the image's or a usual one.
func withPath(env []string) []string {
	if slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		return env
	}
	return append(slices.Clone(env), "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}

// list returns the running containers, by id.
func (m *manager) list() []*container {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*container, 0, len(m.containers))
	for _, id := range slices.Sorted(maps.Keys(m.containers)) {
		out = append(out, m.containers[id])
	}
	return out
}

// remove tears a container down: runtime delete, unmount, bundle removed,
// image unpinned. It is safe on a partly created container and runs once.
func (m *manager) remove(ctx context.Context, c *container) {
	m.teardown(ctx, c, false)
}

// removeInBackground is remove once nobody waits for it (the step has
// ended): the runtime runs at the lowest priority, so that the removal
// yields the CPU to the node's jobs; with two steps' starts and ends
// sharing a node's CPUs, it otherwise slows the next one.
func (m *manager) removeInBackground(ctx context.Context, c *container) {
	m.teardown(ctx, c, true)
}

func (m *manager) teardown(ctx context.Context, c *container, background bool) {
	m.mu.Lock()
	if m.containers[c.id] != c {
		m.mu.Unlock()
		return
	}
	delete(m.containers, c.id)
	m.mu.Unlock()
	m.release(ctx, c, background)
}

// release undoes c once it is out of the manager's table: its processes
// (stop), then its mounts, image and bundle, and those of the filesystem
// it runs over when that is its own (holds: a revived global container's).
func (m *manager) release(ctx context.Context, c *container, background bool) {
	m.stop(ctx, c, background)
	if c.holds != nil {
		defer m.release(ctx, c.holds, background)
	}
	if m.rt != nil {
		if err := unpublishRoot(m.rt, c); err != nil {
			m.log.Warn("unmount", "container", c.id, "err", err)
		}
	}
	mounts, err := oci.MountsUnder(c.bundle)
	if err != nil {
		m.log.Warn("list mounts", "container", c.id, "err", err)
	}
	for _, mp := range mounts {
		if err := oci.Unmount(mp, false); err != nil {
			m.log.Warn("unmount", "container", c.id, "err", err)
			oci.Unmount(mp, true)
		}
	}
	if c.mounted {
		m.mounted.release(c.img.Digest)
	}
	if c.unpin != nil {
		c.unpin()
	}
	if err := os.RemoveAll(c.bundle); err != nil {
		m.log.Warn("remove bundle", "container", c.id, "err", err)
	}
	m.copyups.give(c.req.UID, c.copied)
	if c.layer != "" {
		if err := m.writes.release(c.layer); err != nil {
			m.log.Warn("remove writable layer", "container", c.id, "err", err)
		}
	}
}

func readPid(path string) (int, error) {
	for i := 0; i < 50; i++ {
		b, err := os.ReadFile(path)
		if err == nil && len(bytes.TrimSpace(b)) > 0 {
			return strconv.Atoi(string(bytes.TrimSpace(b)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return 0, fmt.Errorf("runtime wrote no pid to %s", path)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
