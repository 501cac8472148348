package node

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// A restarted daemon (an upgrade) adopts the containers of the previous one
// whose init still runs: a named container stays attachable by the job's
// next steps, ps and status show them, and the job's end removes them. Each
// container's record, written once it is ready (and again as global jobs
// join it), is what the next daemon needs of it; the bundle is root's alone
// (makeBundle), so the record is what this daemon wrote.

// recordFile names, in a bundle, the container's record.
const recordFile = "container.json"

// record is what a restarted daemon needs to take a container over.
type record struct {
	ID      string
	Req     *wire.ContainerRequest
	Img     image
	Rootfs  string
	Env     []string
	Workdir string
	NSNames []string
	Named   bool
	Jobs    []string // a global one's jobs using it
	Created time.Time
	Mounted bool // it counted in its image's mount
	// Holds: it runs over a parked global container's filesystem, which
	// this record does not describe: such a container is not adopted.
	Holds bool
	// InitPid and InitMntNS identify its init: a recycled pid, even that
	// of another container's init, has another mount namespace.
	InitPid   int
	InitMntNS [2]uint64
	// Layer is its writable file system's file in writable_dir, mounted
	// at LayerDir ("": none); LayerDir is also that of the container it
	// runs over.
	Layer, LayerDir string
	// Copied is what its copy-up holds of its user's share of state_dir.
	Copied int64 `json:",omitempty"`
	// Kept: kept for the job's next steps (reuse.go); nil when not.
	Kept *keptRecord `json:",omitempty"`
	// NestPid and NestMntNS identify the holder of the tasks' own
	// namespaces (nest.go), and the mount namespace the tasks are in.
	NestPid   int
	NestMntNS [2]uint64
}

// persist writes c's record into its bundle (replacing an older one).
func (m *manager) persist(c *container) {
	ns, ok := mountNSOf(fmt.Sprintf("/proc/%d/ns/mnt", c.initPid))
	if !ok || c.parked {
		return
	}
	m.mu.Lock()
	if m.containers[c.id] != c { // removed meanwhile: its bundle is going
		m.mu.Unlock()
		return
	}
	r := record{ID: c.id, Req: c.req, Img: *c.img, Rootfs: c.rootfs, Env: c.env, Workdir: c.workdir,
		NSNames: c.nsNames, Named: c.named, Created: c.created, Mounted: c.mounted, Holds: c.holds != nil,
		InitPid: c.initPid, InitMntNS: [2]uint64{ns.dev, ns.ino}, Layer: c.layer, LayerDir: c.layerDir, Copied: c.copied, Kept: keptRecordOf(c)}
	if c.nestPid != 0 {
		tasks, ok := mountNSOf(fmt.Sprintf("/proc/%d/ns/mnt", c.nestPid))
		if !ok {
			m.mu.Unlock()
			return
		}
		r.NestPid, r.NestMntNS = c.nestPid, [2]uint64{tasks.dev, tasks.ino}
	}
	for j := range c.jobs {
		r.Jobs = append(r.Jobs, j)
	}
	b, err := json.Marshal(r)
	m.mu.Unlock()
	if err == nil {
		tmp := filepath.Join(c.bundle, recordFile+".new")
		os.Remove(tmp)
		if err = createFile(tmp, b); err == nil {
			err = os.Rename(tmp, filepath.Join(c.bundle, recordFile))
		}
	}
	if err != nil {
		m.log.Warn("container record not written: a restarted daemon will not adopt it", "container", c.id, "err", err)
	}
}

// adoptable returns the records of the bundles in stateDir whose
// container a restarted daemon takes over: its init runs (the pid's mount
// namespace is the one recorded), and it holds no parked filesystem.
func adoptable(stateDir string) map[string]*record {
	dir := filepath.Join(stateDir, "containers")
	entries, _ := os.ReadDir(dir)
	out := map[string]*record{}
	for _, e := range entries {
		bundle := filepath.Join(dir, e.Name())
		r, err := readRecord(bundle)
		if err != nil || r.Holds {
			continue
		}
		if ns, alive := initMountNS(bundle); alive && ns == (nsID{r.InitMntNS[0], r.InitMntNS[1]}) {
			out[bundle] = r
		}
	}
	return out
}

func readRecord(bundle string) (*record, error) {
	fd, err := unix.Open(filepath.Join(bundle, recordFile), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), recordFile)
	defer f.Close()
	var r record
	if err := json.NewDecoder(f).Decode(&r); err != nil {
		return nil, err
	}
	id, err := os.ReadFile(filepath.Join(bundle, bundleIDFile))
	if err != nil || string(id) != r.ID || r.Req == nil || r.Img.Digest == "" {
		return nil, fmt.Errorf("%s: record and bundle differ", bundle)
	}
	return &r, nil
}

// adopt takes over the container of bundle's record r: its init (a pidfd),
// its namespaces, its image (pinned, and mounted again for what is made
// over it), in the manager's table. A step's own container, whose step
// ended while no daemon listened, goes once no task is left in it.
func (m *manager) adopt(ctx context.Context, bundle string, r *record) error {
	c := &container{id: r.ID, req: r.Req, img: &r.Img, bundle: bundle, rootfs: r.Rootfs, env: r.Env,
		workdir: r.Workdir, named: r.Named, created: r.Created, initPid: r.InitPid, ready: true}
	var err error
	if c.initFD, err = unix.PidfdOpen(r.InitPid, 0); err != nil {
		return fmt.Errorf("its init (pid %d): %w", r.InitPid, err)
	}
	// The pidfd holds the pid: is it still the init recorded?
	if ns, ok := mountNSOf(fmt.Sprintf("/proc/%d/ns/mnt", r.InitPid)); !ok || ns != (nsID{r.InitMntNS[0], r.InitMntNS[1]}) {
		unix.Close(c.initFD)
		return fmt.Errorf("its init (pid %d) has gone", r.InitPid)
	}
	// The tasks' own namespaces are the holder's, if it is still the one
	// recorded (a task may have killed it: the container is then lost to
	// its next steps).
	if r.NestPid != 0 {
		if ns, ok := mountNSOf(fmt.Sprintf("/proc/%d/ns/mnt", r.NestPid)); !ok || ns != (nsID{r.NestMntNS[0], r.NestMntNS[1]}) {
			unix.Close(c.initFD)
			return fmt.Errorf("the holder of its tasks' namespaces (pid %d) has gone", r.NestPid)
		}
		c.nestPid = r.NestPid
	}
	for _, name := range r.NSNames {
		pid := r.InitPid
		if r.NestPid != 0 && slices.Contains(ownNames, name) {
			pid = r.NestPid
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, name))
		if err != nil {
			closeAll(c.nsFiles)
			unix.Close(c.initFD)
			return fmt.Errorf("open its %s namespace: %w", name, err)
		}
		c.nsFiles = append(c.nsFiles, f)
		c.nsNames = append(c.nsNames, name)
	}
	// Its writes count for its user again. A record of another
	// writable_dir (the config changed) leaves the file where it is.
	if r.Layer != "" && r.Layer == m.writes.fileFor(bundle) {
		c.layer = r.Layer
		m.writes.adopt(c.layer, c.req.UID)
	}
	c.layerDir = r.LayerDir
	// Its copy-up counts for its user again, whatever the share now.
	c.copied = r.Copied
	m.copyups.force(c.req.UID, c.copied)
	if len(r.Jobs) > 0 {
		c.jobs = map[string]bool{}
		for _, j := range r.Jobs {
			c.jobs[j] = true
		}
	}
	// The image may have been evicted at the cache's open (the container
	// runs on from its mount): then it is neither pinned nor mounted.
	if unpin, err := m.images.pin(c.img.Digest); err == nil {
		c.unpin = unpin
		if r.Mounted {
			if _, err := m.mounted.acquire(c.img); err == nil {
				c.mounted = true
			}
		}
	}
	m.mu.Lock()
	if _, taken := m.containers[c.id]; taken {
		m.mu.Unlock()
		m.release(ctx, c, false)
		return fmt.Errorf("container %s already exists", c.id)
	}
	m.containers[c.id] = c
	m.mu.Unlock()
	if !c.named && !m.adoptKept(c, r.Kept) {
		go m.removeWhenDone(ctx, c)
	}
	return nil
}

// removeWhenDone removes the adopted step container c once its step is
// over: no process but its init (or the holder of the tasks' namespaces)
// is in the tasks' mount namespace, and none holds it open (slurmstepd
// keeps the namespaces it was sent until the step ends: a task may join
// late). It gives up when ctx ends.
func (m *manager) removeWhenDone(ctx context.Context, c *container) {
	holder := c.initPid
	if c.nestPid != 0 {
		holder = c.nestPid
	}
	ns, ok := mountNSOf(fmt.Sprintf("/proc/%d/ns/mnt", holder))
	if !ok {
		m.remove(ctx, c)
		return
	}
	t := time.NewTicker(staleCheckEvery)
	defer t.Stop()
	for mountNSUsers(ns, holder) > 0 || mountNSHeld(ns) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	m.mu.Lock()
	ours := m.containers[c.id] == c
	m.mu.Unlock()
	if ours {
		m.remove(ctx, c)
		m.log.Info("adopted container removed: its step ended", "container", c.id, "job", c.req.Job, "step", c.req.Step)
	}
}
