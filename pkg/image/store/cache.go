package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.podman.io/image/v5/pkg/shortnames"
	"go.podman.io/image/v5/signature"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/layer"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
	"github.com/podman-hpc/podman-hpc/pkg/image/squashfs"
)

// DefaultPolicyPath is containers-policy.json(5)'s system location.
const DefaultPolicyPath = "/etc/containers/policy.json"

// Options configure a Cache. Zero values mean the documented defaults.
type Options struct {
	// Dir is the cache root on node-local disk, e.g.
	// /var/lib/podman-hpc/images; created 0700, owned by the daemon.
	Dir string
	// TmpDir is where pulls unpack layers ("": Dir/tmp); it needs room
	// for the largest image unpacked. A tmpfs avoids writing unpacked
	// images to disk, at the cost of RAM. It must be a directory only
	// root can write (it is created 0700 if missing), and Open deletes
	// everything in it.
	TmpDir string
	// MaxBytes: evict least-recently-used unpinned images while the
	// squashfs files total more (0: half the size of Dir's file system;
	// negative: no limit).
	MaxBytes int64
	// MaxImageSize bounds what one image may write to disk: its layers'
	// declared sizes, then the bytes of its layers as they are applied,
	// or the size of a squashfs file or archive a user names. A pull that
	// would pass it fails with ErrTooLarge before filling the disk. 0:
	// half the size of TmpDir's file system, at most DefaultMaxImageSize;
	// negative: no limit.
	MaxImageSize int64
	// MaxPullsPerUser bounds the pulls (downloads, and copies of a
	// user's files) one user has running at once; one more waits, with a
	// "note" in its progress, until one of them ends or its context does.
	// Steps asking for the same image share one pull. Root's pulls are
	// not counted. 0: DefaultMaxPullsPerUser; negative: no limit.
	MaxPullsPerUser int
	// MaxAge: evict unpinned images unused for longer (0: no limit).
	MaxAge time.Duration
	// Compression is the mksquashfs compressor, "NAME" or "NAME:LEVEL"
	// (gzip, zstd, lzo, xz, lz4: those the kernel mounts). Default
	// DefaultCompression.
	Compression string
	// Processors is mksquashfs -processors (default runtime.NumCPU()).
	Processors int
	// RegistriesConf is the containers-registries.conf(5) file ("": the
	// system's); RegistriesConfDir its drop-in directory ("": the
	// system's registries.conf.d).
	RegistriesConf    string
	RegistriesConfDir string
	// PolicyPath is the containers-policy.json(5) file ("":
	// DefaultPolicyPath). There is no built-in fallback: a missing file
	// makes Open fail with an error naming it.
	PolicyPath string
	// RegistryTimeout bounds each attempt at a registry request that is
	// not a blob download (default 20s), and how long a blob download
	// may go without receiving data. RegistryAttempts is how many
	// attempts a failing request gets (default 3).
	RegistryTimeout  time.Duration
	RegistryAttempts int
	// TagTTL: for this long after a registry confirmed that a tag is a
	// digest for a user, that user's next Get of the tag is served from
	// the cache without asking the registry (0: always ask). A digest
	// reference a user was confirmed for never needs the registry.
	TagTTL time.Duration
	// ParallelDownloads bounds concurrent layer downloads (default 6).
	ParallelDownloads int
	// Mksquashfs and Unsquashfs are the binaries ("": from PATH).
	Mksquashfs, Unsquashfs string
	// HelperTimeout bounds the whole export of a user's local store
	// (podman save for podman://, the Docker daemon's export for
	// dockerd://): past it the export is stopped, podman with every
	// process it started (a mount_program the user's storage.conf
	// names, say), and the Get fails with ErrHelperTimeout. Default
	// DefaultHelperTimeout.
	HelperTimeout time.Duration
	// Podman is the binary podman:// runs as the user ("": from PATH);
	// DockerSocket the Docker daemon's socket dockerd:// connects to as
	// the user ("": DefaultDockerSocket).
	Podman, DockerSocket string
	// SharedStore is the site image store ("": none), a directory on a
	// file system every node mounts, owned by root and writable by it
	// only: the first node that needs an image builds it there, the
	// others copy it from there instead of pulling (shared.go). One that
	// cannot be used is warned about, and the cache works without it.
	SharedStore string
	// Log receives one line per event (default: discard).
	Log *slog.Logger
	// Evicted, if set, is told how many images the limits (MaxBytes,
	// MaxAge) or a Prune removed, under the cache's lock: it must not
	// call the Cache.
	Evicted func(n int)

	retryDelay time.Duration // source.Options.RetryDelay (tests)
}

// PullOptions say who asks for an image.
type PullOptions struct {
	// UID and GID are the requesting user's; Groups their supplementary
	// groups (nil: looked up in /etc/group). Paths in the reference are
	// read with these credentials, never as root.
	UID, GID uint32
	Groups   []uint32
	// AuthJSON is the user's auth.json (containers-auth.json(5)), read
	// by the caller as the user. nil means anonymous: the daemon never
	// falls back to its own credentials. Only its "auths" entries are
	// used: credential helpers (credHelpers, credsStore) are not run, and
	// the user is told so in a "note". Get, and the pull it starts, keep
	// no reference to it, nor to the credentials read from it, once the
	// pull is done; the caller should drop its own copy after Get.
	AuthJSON []byte
	// Cwd is the user's working directory, for relative paths.
	Cwd string
	// Home is the user's home directory: podman:// runs the user's
	// podman with it as HOME, which finds their storage there. User is
	// their name ("": unknown), for their /etc/subuid ranges.
	Home, User string
	// Progress, if set, is called from other goroutines during Get with
	// phases "resolving", "downloading" (per layer: Layer, Done, Total
	// bytes), "squashing" and "done", and "note" for what the user must
	// know at once (Message: credential helpers not run, waiting for
	// one of their other pulls).
	Progress func(Progress)
	// Refresh asks the registry what a tag is now, even within TagTTL
	// (an explicit pull).
	Refresh bool
}

// Progress is one progress report (package image's: the sources report
// too).
type Progress = image.Progress

// ImageConfig is the part of the image's configuration a container needs.
type ImageConfig struct {
	Env        []string `json:"env,omitempty"`
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	WorkingDir string   `json:"workingDir,omitempty"`
	User       string   `json:"user,omitempty"`
}

// Image is a cached image as one user may see it.
type Image struct {
	// Digest names the content, and is the image's key in the cache: the
	// image manifest's digest for pulled images ("sha256:HEX"), the file's
	// sha256 for squashfs files, in a space of its own
	// ("squashfs:sha256:HEX": the two never match).
	Digest string
	// Path is the squashfs file, root-owned in the cache; mount it
	// read-only, nosuid, nodev. It is never rewritten, only removed.
	Path     string
	Size     int64
	Config   ImageConfig
	Refs     []string // names it was pulled by (a user sees their own)
	Created  time.Time
	LastUsed time.Time
	Users    []uint32 // confirmed users (a user sees only themself)
}

// Cache is a node-local, shared cache of squashfs images. Its methods are
// safe for concurrent use. Only one process may have a Dir open.
type Cache struct {
	o                 Options
	mks               squashfs.Mksquashfs
	policy            string
	dir, images, tmp  string
	log               *slog.Logger
	lockFile          *os.File
	shared            *sharedStore // nil: none
	flights           flightGroup
	slots             *userSlots
	bg                sync.WaitGroup
	mu                sync.Mutex
	ix                *index
	pins              map[string]int
	files             map[fileID]string // squashfs files already hashed
	closed            bool
	now               func() time.Time
	parallelDownloads int
	unsquashfs        string
	src               *source.Resolver
}

// evictGrace keeps a just-used image from being evicted for size between
// Get returning it and the caller pinning it.
const evictGrace = time.Minute

// Open opens (creating) the cache in o.Dir: it takes the directory's lock,
// removes what a killed daemon left in Dir/tmp and any file the index does
// not reference, drops index entries whose files are gone, and evicts per
// MaxBytes/MaxAge. It fails if the policy file is missing or invalid, if
// the compression is not kernel-mountable, if another process holds the
// cache, or if the program did not call reexec.Init() first thing in main.
// Call Close when done.
func Open(ctx context.Context, o Options) (*Cache, error) {
	if o.Dir == "" {
		return nil, errors.New("squash: Options.Dir is empty")
	}
	comp, err := squashfs.ParseCompression(o.Compression)
	if err != nil {
		return nil, err
	}
	if o.Processors <= 0 {
		o.Processors = runtime.NumCPU()
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	c := &Cache{
		o:                 o,
		mks:               squashfs.Mksquashfs{Command: or(o.Mksquashfs, "mksquashfs"), Comp: comp, Processors: o.Processors},
		unsquashfs:        or(o.Unsquashfs, "unsquashfs"),
		policy:            or(o.PolicyPath, DefaultPolicyPath),
		dir:               filepath.Clean(o.Dir),
		log:               o.Log,
		pins:              map[string]int{},
		files:             map[fileID]string{},
		now:               time.Now,
		parallelDownloads: o.ParallelDownloads,
	}
	if c.parallelDownloads <= 0 {
		c.parallelDownloads = 6
	}
	c.images, c.tmp = filepath.Join(c.dir, "images"), filepath.Join(c.dir, "tmp")
	if o.TmpDir != "" {
		c.tmp = filepath.Clean(o.TmpDir)
	}
	if _, err := signature.NewPolicyFromFile(c.policy); err != nil {
		return nil, fmt.Errorf("%w: %s: %v (see containers-policy.json(5))", image.ErrPolicy, c.policy, err)
	}
	srcOpts := source.Options{RegistriesConf: o.RegistriesConf, RegistriesConfDir: o.RegistriesConfDir,
		PolicyPath: c.policy, TmpDir: c.tmp, RegistryTimeout: o.RegistryTimeout,
		RegistryAttempts: o.RegistryAttempts, RetryDelay: o.retryDelay,
		Podman: o.Podman, DockerSocket: o.DockerSocket, Log: c.log}
	if err := source.CheckCredentialHelpers(srcOpts); err != nil {
		return nil, err
	}
	// Fail now rather than at the first pull if main() lacks reexec.Init().
	if err := layer.ReexecReady(); err != nil {
		return nil, err
	}
	c.checkTools()
	for _, d := range []string{c.dir, c.images, c.tmp} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if err := ownedDir(d); err != nil {
			return nil, err
		}
		// An existing directory may have been made by hand: images of
		// private registries are in there.
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, err
		}
	}
	cacheFS, err := fsSize(c.dir)
	if err != nil {
		return nil, err
	}
	tmpFS, err := fsSize(c.tmp)
	if err != nil {
		return nil, err
	}
	defaultLimits(&c.o, cacheFS, tmpFS)
	srcOpts.MaxImageSize, srcOpts.HelperTimeout = c.o.MaxImageSize, c.o.HelperTimeout
	c.src = source.New(srcOpts)
	c.slots = newUserSlots(c.o.MaxPullsPerUser)
	if o.SharedStore != "" {
		if c.shared, err = openShared(o.SharedStore, c.log); err != nil {
			c.log.Warn("site image store unusable: images are pulled by each node", "dir", o.SharedStore, "err", err)
		}
	}
	if err := c.lock(); err != nil {
		return nil, err
	}
	if err := c.recover(); err != nil {
		c.lockFile.Close()
		return nil, err
	}
	c.mu.Lock()
	removed := c.evictLocked(false)
	c.mu.Unlock()
	c.log.Info("image cache open", "dir", c.dir, "images", len(c.ix.Images), "evicted", len(removed),
		"max_bytes", c.o.MaxBytes, "max_image_size", c.o.MaxImageSize, "max_pulls_per_user", c.o.MaxPullsPerUser)
	return c, nil
}

// Limits returns the limits in force, the defaults worked out: MaxBytes,
// MaxImageSize (negative: none) and MaxAge (0: none).
func (c *Cache) Limits() (maxBytes, maxImageSize int64, maxAge time.Duration) {
	return c.o.MaxBytes, c.o.MaxImageSize, c.o.MaxAge
}

// ownedDir refuses a directory the daemon does not own, or a symlink:
// Open deletes what it finds in its directories, and pulls unpack setuid
// binaries there.
func ownedDir(d string) error {
	fi, err := os.Lstat(d)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s: must be a directory owned by uid %d, not a symlink", d, os.Geteuid())
	}
	return nil
}

// checkTools warns at start-up when squashfs-tools are missing or too old
// for the options we pass (-exit-on-error, -quiet, -mem: 4.5).
func (c *Cache) checkTools() {
	if _, err := exec.LookPath(c.unsquashfs); err != nil {
		c.log.Warn("unsquashfs missing: squashfs files cannot be checked", "binary", c.unsquashfs)
	}
	out, err := exec.Command(c.mks.Command, "-version").Output()
	if err != nil {
		c.log.Warn("mksquashfs missing: pulls will fail", "binary", c.mks.Command, "err", err)
		return
	}
	var major, minor int
	if _, err := fmt.Sscanf(string(out), "mksquashfs version %d.%d", &major, &minor); err == nil && major*100+minor < 405 {
		c.log.Warn("mksquashfs older than 4.5: pulls will fail", "version", fmt.Sprintf("%d.%d", major, minor))
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (c *Cache) lock() error {
	f, err := os.OpenFile(filepath.Join(c.dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w: %s", image.ErrLocked, c.dir)
		}
		return err
	}
	c.lockFile = f
	return nil
}

// recover brings Dir back to a consistent state after a crash: partial
// work goes, files not in the index go, entries without files go.
func (c *Cache) recover() error {
	tmp, err := os.ReadDir(c.tmp)
	if err != nil {
		return err
	}
	for _, e := range tmp {
		p := filepath.Join(c.tmp, e.Name())
		c.log.Info("removing partial work of an earlier run", "path", p)
		if err := os.RemoveAll(p); err != nil {
			return err
		}
	}
	top, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	for _, e := range top {
		if strings.HasPrefix(e.Name(), "."+indexName+".tmp-") {
			_ = os.Remove(filepath.Join(c.dir, e.Name()))
		}
	}
	ix, err := loadIndex(filepath.Join(c.dir, indexName))
	if err != nil {
		// A cache can be rebuilt; a daemon that does not start cannot.
		aside := filepath.Join(c.dir, fmt.Sprintf("%s.corrupt-%d", indexName, c.now().Unix()))
		c.log.Error("index unreadable, starting empty", "err", err, "kept", aside)
		if err := os.Rename(filepath.Join(c.dir, indexName), aside); err != nil {
			return err
		}
		ix = &index{Version: indexVersion, Images: map[string]*entry{}}
	}
	c.ix = ix
	keep := map[string]bool{}
	for d, e := range ix.Images {
		cfg, err := readConfig(c.configPath(d))
		fi, serr := os.Stat(c.imagePath(d))
		if err != nil || serr != nil || fi.Size() != e.Size {
			c.log.Warn("dropping index entry whose files are missing or changed", "digest", d)
			delete(ix.Images, d)
			continue
		}
		if e.Checks < contentChecks {
			c.log.Warn("dropping an image cached before its content, or who may have it, was checked as it is now", "digest", d)
			delete(ix.Images, d)
			continue
		}
		e.config = cfg
		keep[filepath.Base(c.imagePath(d))] = true
		keep[filepath.Base(c.configPath(d))] = true
	}
	files, err := os.ReadDir(c.images)
	if err != nil {
		return err
	}
	for _, f := range files {
		if !keep[f.Name()] {
			c.log.Info("removing file the index does not reference", "file", f.Name())
			if err := os.RemoveAll(filepath.Join(c.images, f.Name())); err != nil {
				return err
			}
		}
	}
	return ix.save(c.dir)
}

func (c *Cache) imagePath(d string) string {
	return filepath.Join(c.images, keyStem(d)+".squashfs")
}

func (c *Cache) configPath(d string) string {
	return filepath.Join(c.images, keyStem(d)+".json")
}

func digestHex(d string) string {
	_, hex, _ := strings.Cut(d, ":")
	return hex
}

// Close waits for background clean-up and releases the cache directory.
// Calls in flight must have returned.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.wait()
	return c.lockFile.Close()
}

// wait waits for the background clean-up: the cache's and its sources'.
func (c *Cache) wait() {
	c.bg.Wait()
	c.src.Wait()
}

// removeLater deletes a work directory in the background: a 1 GB rootfs
// takes a while to delete and the user need not wait for it.
func (c *Cache) removeLater(p string) {
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		if err := os.RemoveAll(p); err != nil {
			c.log.Warn("cannot remove work directory", "path", p, "err", err)
		}
	}()
}

// view is e as uid may see it (uid 0 sees everything).
func (c *Cache) view(e *entry, uid uint32) Image {
	img := Image{
		Digest: e.Digest, Path: c.imagePath(e.Digest), Size: e.Size, Config: cloneConfig(e.config),
		Created: e.Created, LastUsed: e.LastUsed,
	}
	for name, r := range e.Refs {
		if uid == 0 || hasUID(r.Users, uid) {
			img.Refs = append(img.Refs, name)
		}
	}
	slices.Sort(img.Refs)
	if uid == 0 {
		img.Users = slices.Clone(e.Users)
	} else if hasUID(e.Users, uid) {
		img.Users = []uint32{uid}
	}
	return img
}

func cloneConfig(c ImageConfig) ImageConfig {
	c.Env, c.Entrypoint, c.Cmd = slices.Clone(c.Env), slices.Clone(c.Entrypoint), slices.Clone(c.Cmd)
	return c
}

// confirmLocked records that uid may use entry d by the name ref (""
// for none), resolved now by a registry if resolved is set, and that d is
// known by the registry repository repo ("" for none: right.go), and
// marks it used. It returns uid's view, or nil if d is not cached.
func (c *Cache) confirmLocked(d, ref string, uid uint32, resolved bool, repo string) *Image {
	e := c.ix.Images[d]
	if e == nil {
		return nil
	}
	now := c.now()
	changed := !hasUID(e.Users, uid)
	e.Users = addUID(e.Users, uid)
	if repo != "" && !slices.Contains(e.Sources, repo) {
		e.Sources = addSource(e.Sources, repo)
		changed = true
	}
	e.LastUsed = now
	if ref != "" {
		// A name points to one digest at a time (a tag moved: the old
		// image keeps its other names).
		for od, oe := range c.ix.Images {
			if _, ok := oe.Refs[ref]; ok && od != d {
				delete(oe.Refs, ref)
				changed = true
			}
		}
		r := e.Refs[ref]
		if r == nil {
			r = &refUse{}
			e.Refs[ref] = r
		}
		changed = changed || !hasUID(r.Users, uid)
		r.Users = addUID(r.Users, uid)
		if resolved {
			r.Resolved = now
		}
	}
	save := c.ix.touch
	if changed {
		save = c.ix.save
	}
	if err := save(c.dir); err != nil {
		c.log.Warn("cannot save the index", "err", err)
	}
	img := c.view(e, uid)
	return &img
}

// Pin marks the image with this digest as in use by a running container:
// it is not evicted or removed until release is called (release is
// idempotent). Pins live in memory only: after a daemon restart, pin the
// images of containers that still run. Errors: ErrNotFound.
func (c *Cache) Pin(digest string) (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.ix.Images[digest]
	if e == nil {
		return nil, fmt.Errorf("pin %q: %w", digest, image.ErrNotFound)
	}
	c.pins[digest]++
	e.LastUsed = c.now()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.pins[digest]--; c.pins[digest] <= 0 {
				delete(c.pins, digest)
			}
			// MaxAge counts from the end of the last use.
			if e := c.ix.Images[digest]; e != nil {
				e.LastUsed = c.now()
				if err := c.ix.touch(c.dir); err != nil {
					c.log.Warn("cannot save the index", "err", err)
				}
			}
		})
	}, nil
}

// List returns the images uid may see, most recently used first: uid 0
// sees all, other users the images they pulled or were confirmed for.
func (c *Cache) List(uid uint32) []Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Image
	for _, e := range c.ix.Images {
		if uid == 0 || hasUID(e.Users, uid) {
			out = append(out, c.view(e, uid))
		}
	}
	sortByUse(out)
	return out
}

func sortByUse(imgs []Image) {
	slices.SortFunc(imgs, func(a, b Image) int {
		if c := b.LastUsed.Compare(a.LastUsed); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
}

// Remove removes the image ref names (an image reference as given to Get,
// resolved through the index only, or a digest "sha256:..."). For uid 0
// the image is deleted. For another user, the user's claim is dropped and
// the image is deleted once nobody claims it; a user can only reach their
// own images. Errors: ErrNotFound, ErrInUse (pinned; nothing changed),
// ErrBadReference.
func (c *Cache) Remove(ref string, uid uint32) error {
	names, err := c.indexNames(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var hits []*entry
	for _, e := range c.ix.Images {
		if uid != 0 && !hasUID(e.Users, uid) {
			continue
		}
		if names[e.Digest] || slices.ContainsFunc(mapsKeys(e.Refs), func(r string) bool { return names[r] }) {
			hits = append(hits, e)
		}
	}
	if len(hits) == 0 {
		return fmt.Errorf("remove %q: %w", ref, image.ErrNotFound)
	}
	for _, e := range hits {
		if c.pins[e.Digest] > 0 && (uid == 0 || len(e.Users) == 1) {
			return fmt.Errorf("remove %q: %w by a running container", ref, image.ErrInUse)
		}
	}
	for _, e := range hits {
		if uid != 0 {
			dropUser(e, uid)
			if len(e.Users) > 0 {
				continue
			}
		}
		c.deleteLocked(e)
	}
	return c.ix.save(c.dir)
}

func mapsKeys(m map[string]*refUse) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func dropUser(e *entry, uid uint32) {
	e.Users = removeUID(e.Users, uid)
	for name, r := range e.Refs {
		r.Users = removeUID(r.Users, uid)
		if len(r.Users) == 0 {
			delete(e.Refs, name)
		}
	}
}

// deleteLocked drops e from the index (the caller saves it) and deletes
// its files. A mounted squashfs survives: the loop device holds the inode.
func (c *Cache) deleteLocked(e *entry) {
	delete(c.ix.Images, e.Digest)
	for id, d := range c.files {
		if d == e.Digest {
			delete(c.files, id)
		}
	}
	for _, p := range []string{c.imagePath(e.Digest), c.configPath(e.Digest)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("cannot remove image file", "path", p, "err", err)
		}
	}
	c.log.Info("image removed", "digest", e.Digest, "size", e.Size)
}

// Prune evicts images and returns what uid no longer sees. With all
// false it applies MaxBytes and MaxAge (any user may trigger that; it is
// the admin's policy). With all set, uid 0 removes every unpinned image;
// another user drops their claim on every image, and images nobody
// claims any more are removed unless pinned.
func (c *Cache) Prune(ctx context.Context, all bool, uid uint32) ([]Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var gone []Image
	if all && uid != 0 {
		for _, e := range c.ix.Images {
			if !hasUID(e.Users, uid) {
				continue
			}
			gone = append(gone, c.view(e, uid))
			dropUser(e, uid)
			if len(e.Users) == 0 && c.pins[e.Digest] == 0 {
				c.deleteLocked(e)
			}
		}
		if err := c.ix.save(c.dir); err != nil {
			return nil, err
		}
	} else {
		for _, e := range c.evictLocked(all) {
			if uid == 0 || hasUID(e.Users, uid) {
				gone = append(gone, c.view(e, uid))
			}
		}
	}
	sortByUse(gone)
	return gone, nil
}

// indexNames returns the index keys (a digest, or canonical names) that
// ref may denote, asking no registry: a digest or a squashfs file's key
// (squashfs:sha256:...) itself; a short name gives every candidate
// registries.conf lists for it.
func (c *Cache) indexNames(ref string) (map[string]bool, error) {
	if d := strings.TrimPrefix(ref, "@"); source.LooksLikeDigest(strings.TrimPrefix(d, fileKeyPrefix)) {
		return map[string]bool{d: true}, nil
	}
	r, err := source.Parse(ref)
	if err != nil {
		return nil, source.Classify("remove", ref, "", err)
	}
	names := map[string]bool{r.String(): true}
	if r.Kind == source.KindRegistry && r.Short {
		res, err := shortnames.Resolve(c.src.SysContext(""), r.ShortName)
		if err != nil {
			return nil, source.Classify("remove", ref, "", fmt.Errorf("%w: %v", image.ErrShortName, err))
		}
		for _, pc := range res.PullCandidates {
			names["docker://"+source.Pinned(pc.Value).String()] = true
		}
	}
	return names, nil
}
