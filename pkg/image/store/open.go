package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"go.podman.io/image/v5/signature"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/layer"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
	"github.com/podman-hpc/podman-hpc/pkg/image/squashfs"
)

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
		t2s:               squashfs.Tar2sqfs{Command: or(o.Tar2sqfs, "tar2sqfs"), Comp: comp, Processors: o.Processors},
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
	c.slots = newUserSlots(c.o.MaxPullsPerUser, c.o.MaxPulls)
	if o.SharedStore != "" {
		if c.shared, err = openShared(o.SharedStore, c.o.SharedStoreMaxPerUser, c.log); err != nil {
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
		"max_bytes", c.o.MaxBytes, "max_image_size", c.o.MaxImageSize, "max_pulls_per_user", c.o.MaxPullsPerUser, "max_pulls", c.o.MaxPulls)
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
	if c.t2s.Comp.Name == "lz4" {
		// unsquashfs 4.5 cannot read the id table of tar2sqfs's lz4
		// images (the kernel can): lz4 images are made as before.
		c.t2s.Command = ""
	} else if err := c.t2s.Available(); err != nil {
		c.log.Info("tar2sqfs missing: pulls extract each image to disk before mksquashfs, which is slower (install squashfs-tools-ng)", "binary", c.t2s.Command)
		c.t2s.Command = ""
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

// Scratch is a directory of root's (0700) on the cache's own disk for the
// daemon's large temporary files, such as a --container-save's squashfs
// before it is copied to the user's file: state_dir is often a tmpfs that
// slurmd and munge need too, and a save may be as large as an image. What is
// left in it goes at the next Open.
func (c *Cache) Scratch() string { return c.tmp }

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
	c.mu.Lock()
	if err := c.ix.flush(c.dir); err != nil {
		c.log.Warn("cannot save the index", "err", err)
	}
	c.mu.Unlock()
	return c.lockFile.Close()
}
