package node

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

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
	env     []string          // the image's environment, for the tasks
	workdir string
	unpin   func()
	mounted bool // the image's squashfs mount counts this container
	// layer is a writable container's own file system, a file in
	// writable_dir (writable.go); layerDir is where the one it writes
	// into is mounted: its own, or that of the container it runs over.
	layer    string
	layerDir string
	created  time.Time
	ready    bool // made: steps may attach (under the manager's mu)

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
	writes   *writeSpace // writable_dir: writable containers' file systems
	// compression of --container-save's squashfs: the cache's.
	compression string

	mu         sync.Mutex
	containers map[string]*container
	nameLocks  map[string]*sync.Mutex // named container id -> its creation lock
	kept       keptContainers         // the step containers later steps may join (reuse.go)
}

func newManager(log *slog.Logger, rt *oci.Runtime, images imageStore, mounted *imageMounts, cfg config.Config) *manager {
	return &manager{
		log: log, rt: rt, images: images, stateDir: cfg.StateDir, site: cfg.Mounts, batch: cfg.BatchMounts,
		compression: cfg.Compression,
		hooks:       newHookRunner(cfg.Hooks),
		mounted:     mounted,
		writes:      newWriteSpace(cfg),
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
	spec, err := buildSpec(c, cred, mounts, hk, readonly)
	if err != nil {
		return c, err
	}
	if err := m.start(ctx, c, spec, hk, log); err != nil {
		return c, err
	}
	c.env = withHome(c.env, req, acct)
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
		c.img, c.rootfs, c.layerDir = over.img, over.rootfs, over.layerDir
		// Its user's (forStep checked), reached from their user namespace.
		if err := oci.AllowTraverse(over.bundle, c.req.UID); err != nil {
			return err
		}
	} else if err := m.prepareRootfs(ctx, c, cred, progress); err != nil {
		return err
	}
	// The pull is done: the user's registry credentials go (the request
	// lives as long as the container).
	clear(c.req.Auth)
	c.req.Auth = nil
	return nil
}

// buildSpec writes the container's OCI spec into its bundle, once every
// mount point exists in its root, and returns it.
func buildSpec(c *container, cred credential, mounts []specs.Mount, hk *prepared, readonly bool) (*specs.Spec, error) {
	init, err := initBinary()
	if err != nil {
		return nil, err
	}
	args := []string{initPath, "init"}
	if c.req.Entrypoint {
		args = append(slices.Clone(c.img.Entrypoint), args...)
	}
	opts := []oci.SpecOpt{
		oci.WithRootfs(c.rootfs, readonly && !hk.writesRoot),
		oci.WithProcess(args, withPath(c.img.Env), "/"),
		oci.WithUser(c.req.UID, c.req.GID, cred.Groups),
		oci.WithMounts(mounts...),
		oci.WithNamespaces(c.req.Unshare...),
		// The init, the image's entrypoint and what it leaves running
		// are confined as the tasks are (spank/harden.c).
		oci.WithSeccomp(c.req.RemapRoot),
		hk.opt,
		// Last, so that no mount before it (the user's, a module's) can
		// cover the container's first process.
		oci.WithMounts(oci.BindMount(init, initPath, "ro", "nosuid", "nodev")),
	}
	if c.req.RemapRoot {
		opts = append(opts, oci.WithRemappedRoot(c.req.UID, c.req.GID))
	} else {
		opts = append(opts, oci.WithUserNamespace(c.req.UID, c.req.GID))
	}
	if slices.Contains(c.req.Unshare, specs.IPCNamespace) {
		opts = append(opts, oci.WithPrivateIPC())
	}
	spec, err := oci.NewSpec(opts...)
	if err != nil {
		return nil, err
	}
	if err := makeMountpoints(c.rootfs, spec.Mounts); err != nil {
		return nil, err
	}
	// Once every mount point exists: a dangling symlink of the image's
	// leads somewhere now.
	if err := checkUserDestinations(c.rootfs, c.req.Mounts); err != nil {
		return nil, err
	}
	// And the daemon's own (the home, /tmp, the modules'): the last, the
	// init's, is the one mount that belongs there.
	if err := checkImageDestinations(c.rootfs, spec.Mounts[:len(spec.Mounts)-1]); err != nil {
		return nil, err
	}
	if err := writeSpec(filepath.Join(c.bundle, "config.json"), spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// start runs the container (its init, or the image's entrypoint first) and
// waits until it is running its init, which it leaves at the lowest
// priority. With an entrypoint, the namespaces the tasks join are opened
// between the runtime's create and start, before any of the image's code
// runs: an entrypoint that made namespaces of its own (unshare) cannot
// have them handed to slurmstepd, or entered by the daemon.
func (m *manager) start(ctx context.Context, c *container, spec *specs.Spec, hk *prepared, log *slog.Logger) (err error) {
	pidFile := filepath.Join(c.bundle, "init.pid")
	c.output = oci.NewOutput()
	opts := oci.RunOpts{Bundle: c.bundle, PidFile: pidFile, Output: c.output}
	if c.req.Entrypoint {
		opts.Created = func(pid int) error {
			c.initPid = pid
			// Before the image's entrypoint runs: what it starts is
			// the step's too.
			if err := c.place.Join(pid); err != nil {
				return err
			}
			return c.openNamespaces(spec)
		}
	}
	err = m.rt.Run(ctx, c.id, opts)
	if err != nil && ctx.Err() == nil {
		// runc 1.1 now and then loses its init under concurrent starts
		// ("error during container init: %!w(<nil>)"): once more, after
		// clearing what it left.
		log.Warn("container start failed, retrying once", "container", c.id, "err", err)
		closeAll(c.nsFiles)
		c.nsFiles, c.nsNames = nil, nil
		m.rt.Delete(ctx, c.id, oci.DeleteOpts{Force: true})
		err = m.rt.Run(ctx, c.id, opts)
	}
	m.hooks.logTimings(c, log)
	if err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	if c.initPid, err = readPid(pidFile); err != nil {
		return err
	}
	if c.initFD, err = unix.PidfdOpen(c.initPid, 0); err != nil {
		return fmt.Errorf("the container's init (pid %d): %w", c.initPid, err)
	}
	if !c.req.Entrypoint {
		// The init has only started waiting: nothing of the image runs.
		if err := c.place.Join(c.initPid); err != nil {
			return err
		}
	}
	c.env = hk.env
	if c.req.Entrypoint {
		if c.env, err = m.waitEntrypoint(ctx, c); err != nil {
			return err
		}
	}
	// The init runs: what writes from now on is what the entrypoint
	// left running, and gets a bounded share.
	c.output.Limit()
	// The init only waits: at the lowest priority, its death at the
	// removal (the container's mounts go with it) yields the CPU too.
	unix.Setpriority(unix.PRIO_PROCESS, c.initPid, oci.BackgroundNice)
	return nil
}

// attachable readies the running container for its tasks: the namespaces
// they join, opened; its root sealed (nosuid, nodev, and read-only unless
// writable); a private network's loopback up; the working directory.
func (c *container) attachable(ctx context.Context, spec *specs.Spec, readonly bool) error {
	if c.nsFiles == nil { // else opened at its creation (start)
		if err := c.openNamespaces(spec); err != nil {
			return err
		}
	}
	if err := oci.SealRoot(c.nsFiles[len(c.nsFiles)-1], readonly); err != nil {
		return err
	}
	if err := oci.SetPropagation(c.nsFiles[len(c.nsFiles)-1], propagation(c.req.Mounts)); err != nil {
		return wire.OptionErrorf("--container-mounts", "%w", err)
	}
	if slices.Contains(c.req.Unshare, specs.NetworkNamespace) {
		// A private network has its loopback down until someone raises it.
		lo := exec.CommandContext(ctx, "nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", c.initPid), "ip", "link", "set", "lo", "up")
		if out, err := lo.CombinedOutput(); err != nil {
			return fmt.Errorf("bring up the private network's loopback: %s: %w", strings.TrimSpace(string(out)), err)
		}
	}
	c.workdir = firstNonEmpty(c.req.Workdir, c.img.WorkingDir, "/")
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
	c.rootfs = filepath.Join(c.bundle, "rootfs")
	// A read-only root's upper layer holds only mount points and what
	// userRoot copies up (bounded): it stays in the bundle. A writable
	// one's takes the user's writes: in a file system of its own.
	layer := c.bundle
	if c.req.Writable {
		if layer, err = m.writableLayer(ctx, c); err != nil {
			return err
		}
	}
	upper, err := userRoot(c, imageRoot, layer)
	if err != nil {
		return err
	}
	return oci.MountOverlay(filepath.Join(c.bundle, "lower"), upper, filepath.Join(layer, "work"), c.rootfs)
}

// openNamespaces opens the namespaces the tasks join, in the order they must
// join them: the user namespace first (its capabilities are needed for the
// others), the mount namespace last.
func (c *container) openNamespaces(spec *specs.Spec) error {
	order := []specs.LinuxNamespaceType{specs.UserNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.NetworkNamespace, specs.MountNamespace}
	proc := map[specs.LinuxNamespaceType]string{specs.UserNamespace: "user", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.NetworkNamespace: "net", specs.MountNamespace: "mnt"}
	for _, t := range order {
		if !slices.ContainsFunc(spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t }) {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", c.initPid, proc[t]))
		if err != nil {
			return fmt.Errorf("open the container's %s namespace: %w", proc[t], err)
		}
		c.nsFiles = append(c.nsFiles, f)
		c.nsNames = append(c.nsNames, proc[t])
	}
	return nil
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
	if c.layer != "" {
		if err := m.writes.release(c.layer); err != nil {
			m.log.Warn("remove writable layer", "container", c.id, "err", err)
		}
	}
}

// mounts returns the container's mounts beyond the defaults and the init,
// and the files held open for them (the caller closes them once the runtime
// has mounted). fromModules are the modules' binds of paths the job
// influences (hooks.Result.UserMounts): opened as the user too.
func (m *manager) mounts(c *container, acct account, cred credential, fromModules []specs.Mount) ([]specs.Mount, []*os.File, error) {
	var out []specs.Mount
	drop := umounted(c.req.Mounts) // --container-mounts=umount:/DST
	for _, s := range m.site {
		if !drop[s.Dst] {
			out = append(out, oci.BindMount(s.Src, s.Dst, append([]string{"nosuid", "nodev"}, s.Options...)...))
		}
	}
	if c.req.Step == wire.BatchStep {
		for _, s := range m.batch {
			if drop[s.Dst] {
				continue
			}
			if _, err := os.Stat(s.Src); err != nil {
				m.log.Warn("batch_mounts: skipped", "src", s.Src, "err", err)
				continue
			}
			out = append(out, oci.BindMount(s.Src, s.Dst, append([]string{"ro", "nosuid", "nodev"}, s.Options...)...))
		}
	}
	etc, err := m.writeAccountFiles(c, acct)
	if err != nil {
		return nil, nil, err
	}
	out = append(out, etc...)
	apt, err := aptFakeRoot(c, m.mounted.root(c.img.Digest))
	if err != nil {
		return nil, nil, err
	}
	out = append(out, apt...)

	// The user's own mounts (and home), opened as the user: the source is
	// the opened file, so what was checked is what gets mounted.
	var user []stagedMount
	if home, ok, err := homeMount(c.req, acct); err != nil {
		return nil, nil, err
	} else if ok {
		user = append(user, home)
	}
	home := len(user) == 1
	if home && drop[path.Clean(user[0].dst)] {
		user, home = nil, false
	}
	for _, um := range c.req.Mounts {
		if !um.IsTmpfs() && !um.IsUmount() {
			user = append(user, stagedMount{src: um.Src, dst: um.Dst, opts: um.Options})
		}
	}
	if c.req.Script != "" {
		user = append(user, stagedMount{src: c.req.Script, dst: c.req.Script, opts: []string{"ro"}})
	}
	for _, mt := range fromModules {
		user = append(user, stagedMount{src: mt.Source, dst: mt.Destination, opts: mt.Options, module: true})
	}
	staged, held, err := m.stageAsUser(c, acct, cred, user)
	if err != nil {
		return nil, held, err
	}
	return append(out, inUserOrder(staged, home, c.req.Mounts, c.req.UID, c.req.GID, c.req.RemapRoot)...), held, nil
}

// makeMountpoints creates, inside root, every mount's destination that the
// image lacks; those under /dev and /proc are the runtime's (on its tmpfs and
// procfs).
func makeMountpoints(root string, mounts []specs.Mount) error {
	for _, mt := range mounts {
		d := mt.Destination
		if strings.HasPrefix(d, "/dev/") || strings.HasPrefix(d, "/proc/") || strings.HasPrefix(d, "/sys/") {
			continue
		}
		file := false
		if mt.Type == "bind" {
			fi, err := os.Stat(mt.Source)
			if err != nil {
				return fmt.Errorf("mount %s: %w", mt.Source, err)
			}
			file = !fi.IsDir()
		}
		if err := oci.MakeMountpoint(root, d, file); err != nil {
			return err
		}
	}
	return nil
}

// writeAccountFiles writes passwd and group with the job user in them, from
// the image's own files read inside the image's root (never following a
// symlink out of it), and returns their bind mounts.
func (m *manager) writeAccountFiles(c *container, acct account) ([]specs.Mount, error) {
	root := m.mounted.root(c.img.Digest)
	passwd, _ := readInRoot(root, "etc/passwd")
	group, _ := readInRoot(root, "etc/group")
	hostPasswd, _ := os.ReadFile("/etc/passwd")
	hostGroup, _ := os.ReadFile("/etc/group")
	var mounts []specs.Mount
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"group", mergeGroup(bytes.NewReader(group), bytes.NewReader(hostGroup), acct)},
		{"passwd", mergePasswd(bytes.NewReader(passwd), bytes.NewReader(hostPasswd), acct)},
	} {
		p := filepath.Join(c.bundle, f.name)
		if err := os.WriteFile(p, f.data, 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", f.name, err)
		}
		// The container's user namespace sees the host's root as nobody:
		// these are the user's, as the image's files are (userRoot).
		if err := os.Chown(p, int(c.req.UID), int(c.req.GID)); err != nil {
			return nil, err
		}
		mounts = append(mounts, oci.BindMount(p, "/etc/"+f.name, "ro", "nosuid", "nodev", "noexec"))
	}
	return mounts, nil
}

// readInRoot reads root/rel with every path component resolved inside root.
func readInRoot(root, rel string) ([]byte, error) {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, rel, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	// An account file is small; an image's huge one is cut, not a failure.
	return io.ReadAll(io.LimitReader(f, 16<<20))
}

// credentialOf is lookupAccount's credential, or, for a user the daemon's
// /etc/passwd lacks (and no account sent), their uid and gid alone.
func credentialOf(req *wire.ContainerRequest) credential {
	if _, cred, err := lookupAccount(req); err == nil {
		return cred
	}
	return credential{UID: req.UID, GID: req.GID}
}

// lookupAccount is the job user: as the plugin resolved them in slurmstepd
// through the node's own NSS (LDAP and SSSD users included) with the job's
// groups from Slurm, or, from a plugin that does not send the account, as
// /etc/passwd and /etc/group know them (the daemon is static Go: no NSS).
func lookupAccount(req *wire.ContainerRequest) (account, credential, error) {
	if a := req.Account; a != nil {
		acct := account{Name: a.Name, Home: a.Home, Shell: firstNonEmpty(a.Shell, "/bin/sh"), UID: req.UID, GID: req.GID,
			GroupName: firstNonEmpty(a.Groups[0].Name, a.Name), Groups: map[uint32]string{}}
		cred := credential{UID: req.UID, GID: req.GID}
		for _, g := range a.Groups[1:] {
			if g.GID == req.GID {
				continue
			}
			cred.Groups = append(cred.Groups, g.GID)
			if g.Name != "" {
				acct.Groups[g.GID] = g.Name
			}
		}
		return acct, cred, nil
	}
	uid, gid := req.UID, req.GID
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return account{}, credential{}, fmt.Errorf("look up uid %d: %w: the daemon reads /etc/passwd only; a plugin of the daemon's version sends the user from the node's NSS (LDAP, SSSD): ask your admin", uid, err)
	}
	a := account{Name: u.Username, Home: u.HomeDir, Shell: "/bin/sh", UID: uid, GID: gid, Groups: map[uint32]string{}}
	a.GroupName = a.Name
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		a.GroupName = g.Name
	}
	cred := credential{UID: uid, GID: gid}
	gids, _ := u.GroupIds()
	for _, s := range gids {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || uint32(n) == gid {
			continue
		}
		cred.Groups = append(cred.Groups, uint32(n))
		if g, err := user.LookupGroupId(s); err == nil {
			a.Groups[uint32(n)] = g.Name
		}
	}
	return a, cred, nil
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
