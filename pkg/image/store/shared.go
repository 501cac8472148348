package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// The site image store: a directory on a file system every node mounts
// (Lustre, GPFS, NFS), written by the nodes' daemons (root). The first node
// that needs an image builds its squashfs and puts it there; the others
// copy it into their node-local cache instead of pulling it.
//
//	images/HEX.squashfs  the squashfs, published by rename
//	images/HEX.json      its size, sha256 and image config, written last:
//	                     an image is in the store once this file is
//	locks/HEX.lock       the builder's lease: its owner, refreshed (mtime)
//	                     every sharedBeat while it builds
//
// The lock is a file created with O_EXCL (atomic on NFSv3 and later, Lustre
// and GPFS) rather than fcntl or flock: those need lockd on NFSv3, and a lock
// held by a node that died stays held until its lease ends on the server, if
// ever. A waiting node calls a lock stale when it has seen no heartbeat for
// sharedLease by its own clock (nodes' clocks need not agree), takes it over
// by renaming it away (one rename wins), and builds.
type sharedStore struct {
	dir, images, locks string
	node               string
	log                *slog.Logger
	beat, lease, poll  time.Duration
}

const (
	sharedBeat  = 2 * time.Second
	sharedLease = 15 * time.Second
	sharedPoll  = 250 * time.Millisecond
	// sharedPollFirst is a waiter's first look; each next one waits twice
	// as long, up to sharedPoll.
	sharedPollFirst = 10 * time.Millisecond
)

// errLockHeld: another node builds the image.
var errLockHeld = errors.New("another node builds it")

// sharedEntry is images/HEX.json.
type sharedEntry struct {
	Size   int64       `json:"size"`
	SHA256 string      `json:"sha256"`
	Config ImageConfig `json:"config"`
	Node   string      `json:"node"`
	// Sources are the registry repositories the image is known by, as an
	// entry's of the cache (index.go): its builder's source, and those a
	// user showed the blobs from since. None (an older daemon's): every
	// user shows them.
	Sources []string `json:"sources,omitempty"`
}

// openShared prepares dir; an error means the store cannot be used (the
// daemon warns and keeps to its node-local cache).
func openShared(dir string, log *slog.Logger) (*sharedStore, error) {
	node, _ := os.Hostname()
	s := &sharedStore{dir: filepath.Clean(dir), node: node, log: log,
		beat: sharedBeat, lease: sharedLease, poll: sharedPoll}
	s.images, s.locks = filepath.Join(s.dir, "images"), filepath.Join(s.dir, "locks")
	fi, err := os.Lstat(s.dir)
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	// Images of private registries are in there, and whoever could write
	// it would choose every node's root file system.
	if !fi.IsDir() || !ok || int(st.Uid) != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("%s: must be a directory owned by uid %d, writable by it only, not a symlink", s.dir, os.Geteuid())
	}
	for _, d := range []string{s.images, s.locks} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			// A read-only store is still worth reading.
			if !errors.Is(err, syscall.EROFS) && !errors.Is(err, syscall.EACCES) {
				return nil, err
			}
		}
	}
	return s, nil
}

func (s *sharedStore) squashfsPath(d string) string {
	return filepath.Join(s.images, digestHex(d)+".squashfs")
}
func (s *sharedStore) entryPath(d string) string {
	return filepath.Join(s.images, digestHex(d)+".json")
}
func (s *sharedStore) lockPath(d string) string { return filepath.Join(s.locks, digestHex(d)+".lock") }

// lookup returns d's entry, or nil when the store does not have it whole.
func (s *sharedStore) lookup(d string) (*sharedEntry, error) {
	b, err := os.ReadFile(s.entryPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var e sharedEntry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, nil // a torn or foreign file: as if absent (it is rebuilt)
	}
	fi, err := os.Stat(s.squashfsPath(d))
	if err != nil || fi.Size() != e.Size {
		return nil, nil
	}
	return &e, nil
}

// copyOut copies d's squashfs to dst, checking its sha256 against the
// entry's as it goes: a file changed or cut is never used.
func (s *sharedStore) copyOut(d string, e *sharedEntry, dst string) error {
	in, err := os.Open(s.squashfsPath(d))
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), in)
	if err != nil {
		return err
	}
	if n != e.Size || hex.EncodeToString(h.Sum(nil)) != e.SHA256 {
		return fmt.Errorf("%w: %s in the site image store does not match its record", image.ErrDigestMismatch, s.squashfsPath(d))
	}
	return out.Close()
}

// lock takes d's build lease, refreshed until release is called; it fails
// with errLockHeld while another node holds a live one.
func (s *sharedStore) lock(d string) (release func(), err error) {
	p := s.lockPath(d)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, errLockHeld
	}
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(f, "%s %d %s\n", s.node, os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
		return nil, err
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.beat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				now := time.Now()
				if err := os.Chtimes(p, now, now); err != nil {
					s.log.Warn("site image store: cannot renew the build lock", "lock", p, "err", err)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		os.Remove(p)
	}, nil
}

// wait waits while another node holds d's lock: until the image is in
// the store, the lock is gone (the builder failed: the caller may build),
// or the lock stays unrenewed for the lease (the builder died: its lock is
// moved away, and the caller builds).
func (s *sharedStore) wait(ctx context.Context, d string, report func(Progress)) error {
	p := s.lockPath(d)
	var last time.Time
	seen := time.Now()
	said := false
	// Soon at first (a small image is built in a fraction of a second),
	// then every s.poll: a thousand waiting nodes stat the store's metadata
	// server a few times each, not a storm.
	delay := min(sharedPollFirst, s.poll)
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		if e, err := s.lookup(d); err != nil || e != nil {
			return err
		}
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if !said {
			owner, _ := os.ReadFile(p)
			report(Progress{Phase: "note", Message: "waiting for " + firstField(string(owner)) + " to build it in the site image store"})
			said = true
		}
		if m := fi.ModTime(); !m.Equal(last) {
			last, seen = m, time.Now()
		} else if time.Since(seen) > s.lease {
			aside := p + ".stale-" + s.node + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			if err := os.Rename(p, aside); err == nil {
				s.log.Warn("site image store: the builder stopped renewing its lock; taking over", "digest", d, "lock", p)
				os.Remove(aside)
				// What the dead builder was writing is never used; it goes.
				if left, _ := filepath.Glob(filepath.Join(s.images, ".tmp-"+digestHex(d)+"-*")); len(left) > 0 {
					for _, l := range left {
						os.Remove(l)
					}
				}
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		}
		delay = min(2*delay, s.poll)
		t.Reset(delay)
	}
}

func firstField(s string) string {
	for i, r := range s {
		if r == ' ' || r == '\n' {
			return s[:i]
		}
	}
	if s == "" {
		return "another node"
	}
	return s
}

// export puts the node-local squashfs src into the store as d, known by
// sources: the file under a temporary name, synced, renamed; its entry
// last. A failure leaves no file the store would use.
func (s *sharedStore) export(d, src string, cfg ImageConfig, sources []string) (err error) {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(s.images, ".tmp-"+digestHex(d)+"-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), in)
	if err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), s.squashfsPath(d)); err != nil {
		return err
	}
	return s.record(d, &sharedEntry{Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Config: cfg, Node: s.node, Sources: sources})
}

// record writes d's entry e (a whole one: its file is in place). Two
// nodes adding a source at once may lose one of them: a user then shows
// the blobs once more.
func (s *sharedStore) record(d string, e *sharedEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	return writeFileAtomic(s.images, filepath.Base(s.entryPath(d)), b)
}

// storeProblem is the note for a user whose image could not go into the
// store (full, read-only): this node builds it for itself.
func storeProblem(err error, then string) string {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return "warning: the site image store is full: " + then + "; tell your admin"
	case errors.Is(err, syscall.EROFS):
		return "warning: the site image store is read-only: " + then + "; tell your admin"
	}
	return "warning: the site image store cannot be used (" + err.Error() + "): " + then + "; tell your admin"
}

const (
	pullsItself  = "this node pulls the image for itself"
	othersPullIt = "the other nodes pull the image for themselves"
)

// pullVia is pull through the site image store, when there is one: the
// image comes from the store if a node put it there (once p's source has
// shown it: right.go); else this node takes the build lock, pulls, and
// puts it there; else it waits for the node that builds it. A store that
// cannot be written makes this node pull for itself, with a note to the
// user and a warning in the log. A pull from src shows p.
func (c *Cache) pullVia(ctx context.Context, src *source.Source, p *proof, report func(Progress)) (*Image, error) {
	pullSrc := func() (*Image, error) {
		_, err := c.pull(ctx, src, report)
		if err == nil {
			p.read()
		}
		return nil, err
	}
	s := c.shared
	if s == nil {
		return pullSrc()
	}
	d := src.Digest.String()
	for {
		ok, err := c.fromShared(ctx, d, p, report)
		if ok {
			return nil, nil
		}
		if refused(ctx, err) {
			return nil, err
		}
		if err != nil {
			c.log.Warn("site image store: cannot read the image", "digest", d, "err", err)
			report(Progress{Phase: "note", Message: storeProblem(err, pullsItself)})
			return pullSrc()
		}
		release, err := s.lock(d)
		if errors.Is(err, errLockHeld) {
			if err := s.wait(ctx, d, report); err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				c.log.Warn("site image store: cannot wait for the builder", "digest", d, "err", err)
				return pullSrc()
			}
			continue
		}
		if err != nil {
			c.log.Warn("site image store: cannot take the build lock; pulling for this node only", "digest", d, "err", err)
			report(Progress{Phase: "note", Message: storeProblem(err, pullsItself)})
			return pullSrc()
		}
		// Built between our look and our lock?
		if ok, err := c.fromShared(ctx, d, p, report); ok || refused(ctx, err) {
			release()
			return nil, err
		}
		_, err = pullSrc()
		if err == nil {
			c.exportShared(d, report)
		}
		release()
		return nil, err
	}
}

// refused: fromShared failed for the caller's source or context, not for
// the store.
func refused(ctx context.Context, err error) bool {
	return err != nil && (ctx.Err() != nil || errors.Is(err, image.ErrIncompleteImage) || errors.Is(err, image.ErrTooLarge))
}

// fromShared copies d from the store into the cache, if the store has it
// and p's source has shown it.
func (c *Cache) fromShared(ctx context.Context, d string, p *proof, report func(Progress)) (bool, error) {
	e, err := c.shared.lookup(d)
	if err != nil || e == nil {
		return false, err
	}
	if err := c.showStored(ctx, d, e, p); err != nil {
		return false, err
	}
	start := time.Now()
	report(Progress{Phase: "note", Message: "copying the image from the site image store"})
	out, err := newTempFile(c.images)
	if err != nil {
		return false, err
	}
	defer os.Remove(out)
	if err := c.shared.copyOut(d, e, out); err != nil {
		return false, err
	}
	if err := c.publish(d, out, e.Config, e.Sources); err != nil {
		return false, err
	}
	c.log.Info("image copied from the site image store", "digest", d, "size", e.Size, "built_by", e.Node, "duration", time.Since(start))
	return true, nil
}

// showStored has p's source show d, which the store holds as e: a
// repository e is known by shows it by its word, any other source by its
// blobs, and a repository that showed them is recorded in the store's
// entry (its failure is the store's, not the user's).
func (c *Cache) showStored(ctx context.Context, d string, e *sharedEntry, p *proof) error {
	if err := c.show(ctx, p, e.Sources); err != nil {
		return err
	}
	if p.repo == "" || slices.Contains(e.Sources, p.repo) {
		return nil
	}
	e.Sources = addSource(slices.Clone(e.Sources), p.repo)
	if err := c.shared.record(d, e); err != nil {
		c.log.Warn("site image store: cannot record a source of the image", "digest", d, "source", p.repo, "err", err)
	}
	return nil
}

// exportShared puts the freshly pulled d into the store; a failure is
// the store's problem, not the pull's.
func (c *Cache) exportShared(d string, report func(Progress)) {
	release, err := c.Pin(d)
	if err != nil {
		return // evicted already: nothing to share
	}
	defer release()
	c.mu.Lock()
	var cfg ImageConfig
	var sources []string
	if e := c.ix.Images[d]; e != nil {
		cfg, sources = cloneConfig(e.config), slices.Clone(e.Sources)
	}
	c.mu.Unlock()
	start := time.Now()
	if err := c.shared.export(d, c.imagePath(d), cfg, sources); err != nil {
		c.log.Warn("site image store: cannot store the image; other nodes pull it themselves", "digest", d, "err", err)
		report(Progress{Phase: "note", Message: storeProblem(err, othersPullIt)})
		return
	}
	c.log.Info("image put into the site image store", "digest", d, "duration", time.Since(start))
}
