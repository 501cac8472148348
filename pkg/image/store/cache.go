package store

import (
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image/source"
	"github.com/podman-hpc/podman-hpc/pkg/image/squashfs"
)

// Cache is a node-local, shared cache of squashfs images. Its methods are
// safe for concurrent use. Only one process may have a Dir open.
type Cache struct {
	o                 Options
	mks               squashfs.Mksquashfs
	t2s               squashfs.Tar2sqfs // Command "": pulls extract and run mks
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
	reserved          int64 // room held by pulls in flight (room.go)
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

func (c *Cache) imagePath(d string) string {
	return filepath.Join(c.images, keyStem(d)+".squashfs")
}

func (c *Cache) configPath(d string) string {
	return filepath.Join(c.images, keyStem(d)+".json")
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

// What enters the cache (publish) and what leaves it (deleteLocked, by
// Remove and Prune, and evictLocked, by the limits), under Cache.mu.

// evictLocked applies the cache's limits and returns the entries it
// removed. Pinned images are never removed. With all, every unpinned
// image goes. Otherwise images unused for longer than MaxAge go, then,
// least recently used first, images until the total is within MaxBytes;
// an image used within evictGrace is spared the size limit (it was just
// handed out and is about to be pinned), so the cache may stay over
// MaxBytes for that long.
// The room reserved by pulls in flight (room.go) counts as held.
func (c *Cache) evictLocked(all bool) []*entry {
	return c.evictFor(all, 0, evictGrace)
}

// evictFor is evictLocked making room for more bytes, sparing the size
// limit's evictions images used within grace.
func (c *Cache) evictFor(all bool, more int64, grace time.Duration) []*entry {
	now := c.now()
	total := c.reserved + more
	lru := make([]*entry, 0, len(c.ix.Images))
	for _, e := range c.ix.Images {
		total += e.Size
		lru = append(lru, e)
	}
	slices.SortFunc(lru, func(a, b *entry) int {
		if c := a.LastUsed.Compare(b.LastUsed); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	var gone []*entry
	for _, e := range lru {
		if c.pins[e.Digest] > 0 {
			continue
		}
		idle := now.Sub(e.LastUsed)
		switch {
		case all,
			c.o.MaxAge > 0 && idle > c.o.MaxAge,
			c.o.MaxBytes > 0 && total > c.o.MaxBytes && idle > grace:
			c.deleteLocked(e)
			total -= e.Size
			gone = append(gone, e)
		}
	}
	if len(gone) > 0 {
		if err := c.ix.save(c.dir); err != nil {
			c.log.Warn("cannot save the index", "err", err)
		}
		if c.o.Evicted != nil {
			c.o.Evicted(len(gone))
		}
	}
	return gone
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

// publish moves a finished squashfs (and its config) into images/ and
// records it, known by the registry repositories sources (sorted; see
// right.go), then applies the cache's limits. Files go first and the
// index last, so a crash in between leaves files Open removes, never an
// entry without its file. The squashfs is fsynced first: after a power
// loss the index must not point at a file of zeroes.
// The room r reserved for it (room.go) is released, under the same lock
// that adds the image's real size, whatever the outcome.
func (c *Cache) publish(d, squashfs string, cfg ImageConfig, sources []string, r *reservation) error {
	defer r.release()
	f, err := os.Open(squashfs)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return err
	}
	// mksquashfs creates its output with the daemon's umask; nobody
	// but root needs to read it.
	if err := os.Chmod(squashfs, 0o600); err != nil {
		return err
	}
	b, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r.releaseLocked()
	if c.ix.Images[d] != nil {
		return nil // published meanwhile (two users' copies of one file)
	}
	if err := writeFileAtomic(c.images, filepath.Base(c.configPath(d)), b); err != nil {
		return err
	}
	if err := os.Rename(squashfs, c.imagePath(d)); err != nil {
		os.Remove(c.configPath(d))
		return err
	}
	now := c.now()
	c.ix.Images[d] = &entry{Digest: d, Size: fi.Size(), Created: now, LastUsed: now,
		Refs: map[string]*refUse{}, Checks: contentChecks, Sources: sources, config: cfg}
	if err := c.ix.save(c.dir); err != nil {
		delete(c.ix.Images, d)
		os.Remove(c.imagePath(d))
		os.Remove(c.configPath(d))
		return err
	}
	c.evictLocked(false)
	return nil
}

// newTempFile creates an empty 0600 file in dir for mksquashfs or a copy.
func newTempFile(dir string) (string, error) {
	f, err := os.CreateTemp(dir, ".new-*.squashfs")
	if err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}
