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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// The site image store: a directory on a file system every node mounts
// (Lustre, GPFS, NFS), written by the nodes' daemons (root). The first node
// that needs an image builds its squashfs and puts it there; the others
// copy it into their node-local cache instead of pulling it.
//
//	images/HEX.squashfs  the squashfs, published by rename
//	images/HEX.json      its size, sha256 and image config, written last:
//	                     an image is in the store once this file is
//	locks/HEX-UID.lock   a builder's lease for user UID: its owner,
//	                     refreshed (mtime) every sharedBeat while it builds
//	locks/HEX.export     the lease of the node writing images/HEX.*
//	locks/user-UID.quota the lease of the node storing one of UID's
//	                     images (shared_bound.go)
//
// A build is one user's pull (it reads that user's source, which the user
// may stall at will): the nodes of that user's job wait for it, and
// another user's node builds the image itself rather than wait. Whichever
// build ends first exports the image, under the export lease, which is
// held only while a node-local file is copied in, never across a pull.
//
// A lease is a file created with O_EXCL (atomic on NFSv3 and later, Lustre
// and GPFS) rather than fcntl or flock: those need lockd on NFSv3, and a lock
// held by a node that died stays held until its lease ends on the server, if
// ever. A node calls a lease stale when it has seen no heartbeat for
// sharedLease by its own clock (nodes' clocks need not agree), takes it over
// by renaming it away (one rename wins), and goes on.
type sharedStore struct {
	dir, images, locks string
	node               string
	log                *slog.Logger
	beat, lease, poll  time.Duration
	// maxPerUser bounds the bytes of the images one user's pulls stored
	// (shared_bound.go); <= 0: no bound.
	maxPerUser int64
}

const (
	sharedBeat  = 2 * time.Second
	sharedLease = 15 * time.Second
	sharedPoll  = 250 * time.Millisecond
	// sharedPollFirst is a waiter's first look; each next one waits twice
	// as long, up to sharedPoll.
	sharedPollFirst = 10 * time.Millisecond
)

// errLockHeld: another node builds the image for the same user.
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
	// UID is the user whose pull built and stored the image: their
	// share of the store holds it (shared_bound.go). None (an older
	// daemon's): no one's.
	UID *uint32 `json:"uid,omitempty"`
}

// openShared prepares dir; an error means the store cannot be used (the
// daemon warns and keeps to its node-local cache).
func openShared(dir string, maxPerUser int64, log *slog.Logger) (*sharedStore, error) {
	node, _ := os.Hostname()
	s := &sharedStore{dir: filepath.Clean(dir), node: node, log: log,
		beat: sharedBeat, lease: sharedLease, poll: sharedPoll, maxPerUser: maxPerUser}
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
func (s *sharedStore) lockPath(d string, uid uint32) string {
	return filepath.Join(s.locks, fmt.Sprintf("%s-%d.lock", digestHex(d), uid))
}

func (s *sharedStore) exportLockPath(d string) string {
	return filepath.Join(s.locks, digestHex(d)+".export")
}

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

// lock takes d's build lease for uid's pull, refreshed until release is
// called; it fails with errLockHeld while another node holds a live one.
func (s *sharedStore) lock(d string, uid uint32) (release func(), err error) {
	return s.takeLease(s.lockPath(d, uid), uid)
}

// takeLease creates the lease file p, and refreshes it until release; it
// fails with errLockHeld while p exists.
func (s *sharedStore) takeLease(p string, uid uint32) (release func(), err error) {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, errLockHeld
	}
	if err != nil {
		return nil, err
	}
	_, err = fmt.Fprintf(f, "%s %d %s %d\n", s.node, os.Getpid(), time.Now().UTC().Format(time.RFC3339), uid)
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

// wait waits while another node holds d's build lease for uid's pull:
// until the image is in the store, the lease is gone (the builder failed:
// the caller may build), or it is a dead node's (leaseWatch: the
// builder died: its lease is moved away, and the caller builds). Another
// user's build is never waited for: it has a lease of its own.
func (s *sharedStore) wait(ctx context.Context, d string, uid uint32, report func(Progress)) error {
	p := s.lockPath(d, uid)
	w := s.watch(p)
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
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		w.note(report, "build it in the site image store")
		if w.dead() {
			s.takeOver(p, d)
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

// takeOver moves the dead node's lease p away (one rename wins).
func (s *sharedStore) takeOver(p, d string) {
	aside := p + ".stale-" + s.node + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := os.Rename(p, aside); err == nil {
		s.log.Warn("site image store: a node stopped renewing its lease; taking over", "digest", d, "lock", p)
		os.Remove(aside)
	}
}

// leaseWatch is a waiter's view of a lease another node holds.
type leaseWatch struct {
	s          *sharedStore
	p          string
	last, seen time.Time
	said       bool
}

func (s *sharedStore) watch(p string) *leaseWatch {
	return &leaseWatch{s: s, p: p, seen: time.Now()}
}

// dead says whether the lease is a dead node's: this node's, left by an
// earlier daemon (another pid), or one whose mtime has not changed for
// s.lease by this node's own clock (nodes' clocks need not agree).
func (w *leaseWatch) dead() bool {
	fi, err := os.Stat(w.p)
	if err != nil {
		return false // gone: take it
	}
	if b, err := os.ReadFile(w.p); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 2 && f[0] == w.s.node && f[1] != strconv.Itoa(os.Getpid()) {
			return true
		}
	}
	if m := fi.ModTime(); !m.Equal(w.last) {
		w.last, w.seen = m, time.Now()
		return false
	}
	return time.Since(w.seen) > w.s.lease
}

// note tells the user, once, that they wait for the lease's holder to do
// what (a phrase after "to").
func (w *leaseWatch) note(report func(Progress), what string) {
	if w.said || report == nil {
		return
	}
	owner, _ := os.ReadFile(w.p)
	report(Progress{Phase: "note", Message: "waiting for " + firstField(string(owner)) + " to " + what})
	w.said = true
}

// sweepTemps removes the store's temporary files (a squashfs's copy, a
// record's) nobody has written to for four leases: a dead node's, which
// no record names and no user's share counts. A live writer writes on, so
// its file is never that old. Called once a dead node's lease is taken.
func (s *sharedStore) sweepTemps() {
	left, _ := filepath.Glob(filepath.Join(s.images, ".*.tmp-*"))
	more, _ := filepath.Glob(filepath.Join(s.images, ".tmp-*"))
	for _, l := range append(left, more...) {
		if fi, err := os.Lstat(l); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) > 4*s.lease {
			os.Remove(l)
		}
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
// sources and counted to uid, whose pull built it (report takes notes of
// its waits; nil: none): the file under a
// temporary name, synced, renamed; its entry last. A failure leaves no
// file the store would use.
func (s *sharedStore) export(d, src string, cfg ImageConfig, sources []string, uid uint32, report func(Progress)) (err error) {
	var release func()
	p := s.exportLockPath(d)
	w := s.watch(p)
	tookOver := false
	for {
		// Another user's build may have stored it meanwhile.
		if e, err := s.lookup(d); err != nil || e != nil {
			return err
		}
		if release, err = s.takeLease(p, 0); !errors.Is(err, errLockHeld) {
			break
		}
		// Another node stores it now (a copy of a finished file: it
		// cannot be stalled), or died doing it: its lease is taken
		// over. Wait for it: this build's waiters look in the store
		// once its build lease is gone, which is after this returns.
		if w.dead() {
			s.takeOver(p, d)
			tookOver = true
			continue
		}
		w.note(report, "finish putting this image into the site image store")
		time.Sleep(s.poll)
	}
	if err != nil {
		return err
	}
	defer release()
	if tookOver {
		// What the dead exporter was writing is never used; it goes.
		// Only the lease's holder removes it: another node that took
		// the lease over first may be writing its own already.
		if left, _ := filepath.Glob(filepath.Join(s.images, ".tmp-"+digestHex(d)+"-*")); len(left) > 0 {
			for _, l := range left {
				os.Remove(l)
			}
		}
		s.sweepTemps()
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if s.maxPerUser > 0 {
		fi, err := in.Stat()
		if err != nil {
			return err
		}
		releaseQuota, err := s.quotaLease(uid, report)
		if err != nil {
			return err
		}
		defer releaseQuota()
		if err := s.makeRoom(uid, fi.Size()); err != nil {
			return err
		}
	}
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
	return s.record(d, &sharedEntry{Size: n, SHA256: hex.EncodeToString(h.Sum(nil)), Config: cfg, Node: s.node, Sources: sources, UID: &uid})
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
