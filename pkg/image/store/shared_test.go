package store

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

func testShared(t *testing.T) *sharedStore {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(dir, 0o700)
	s, err := openShared(dir, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	s.beat, s.lease, s.poll = 20*time.Millisecond, 200*time.Millisecond, 10*time.Millisecond
	return s
}

const testDigest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// An image is in the store once exported whole, and a copy out checks it.
func TestSharedExportLookup(t *testing.T) {
	t.Parallel()
	s := testShared(t)
	if e, err := s.lookup(testDigest); e != nil || err != nil {
		t.Fatalf("empty store: %v %v", e, err)
	}
	src := filepath.Join(t.TempDir(), "img.squashfs")
	os.WriteFile(src, []byte("squashfs bytes"), 0o600)
	if err := s.export(testDigest, src, ImageConfig{Cmd: []string{"sh"}}, nil, 1000, nil); err != nil {
		t.Fatal(err)
	}
	e, err := s.lookup(testDigest)
	if err != nil || e == nil || e.Size != 14 || e.Config.Cmd[0] != "sh" {
		t.Fatalf("lookup: %+v %v", e, err)
	}
	dst := filepath.Join(t.TempDir(), "out")
	os.WriteFile(dst, nil, 0o600)
	if err := s.copyOut(testDigest, e, dst); err != nil {
		t.Fatal(err)
	}
	// Same size, other bytes: refused.
	os.WriteFile(s.squashfsPath(testDigest), []byte("squashfs BYTES"), 0o600)
	if err := s.copyOut(testDigest, e, dst); !errors.Is(err, image.ErrDigestMismatch) {
		t.Errorf("changed file copied: %v", err)
	}
	// A file cut short is not in the store.
	os.WriteFile(s.squashfsPath(testDigest), []byte("squash"), 0o600)
	if e, _ := s.lookup(testDigest); e != nil {
		t.Error("a cut file is in the store")
	}
}

// One node holds the lock; another waits until it is released, or takes
// it over once it goes unrenewed for the lease (the builder died), and the
// dead builder's partial file goes.
func TestSharedLockLease(t *testing.T) {
	t.Parallel()
	s := testShared(t)
	release, err := s.lock(testDigest, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.lock(testDigest, 1000); !errors.Is(err, errLockHeld) {
		t.Fatalf("second lock: %v", err)
	}
	// Renewed: a waiter keeps waiting past the lease.
	ctx, cancel := context.WithTimeout(context.Background(), 3*s.lease)
	err = s.wait(ctx, testDigest, 1000, func(Progress) {})
	cancel()
	if ctx.Err() == nil {
		t.Fatalf("wait returned while the builder was alive: %v", err)
	}
	release()
	if err := s.wait(context.Background(), testDigest, 1000, func(Progress) {}); err != nil {
		t.Fatal(err)
	}
	// A dead builder: its lock is never renewed.
	os.WriteFile(s.lockPath(testDigest, 1000), []byte("node9 1 x 1000\n"), 0o600)
	start := time.Now()
	var notes []string
	if err := s.wait(context.Background(), testDigest, 1000, func(p Progress) { notes = append(notes, p.Message) }); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < s.lease {
		t.Errorf("took over before the lease ended")
	}
	if _, err := os.Stat(s.lockPath(testDigest, 1000)); err == nil {
		t.Error("stale lock kept")
	}
	if len(notes) != 1 || notes[0] != "waiting for node9 to build it in the site image store" {
		t.Errorf("notes %q", notes)
	}
	if r, err := s.lock(testDigest, 1000); err != nil {
		t.Errorf("lock after takeover: %v", err)
	} else {
		r()
	}
}

// A store anyone may write is refused.
func TestSharedRefusesWritableDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	if _, err := openShared(dir, 0, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("a world-writable store was accepted")
	}
}

// Nobody waits for another user's build of an image (their pull reads a
// source of theirs, which they may stall at will): each user's build has
// a lease of its own (outside reviews 14 and 15).
func TestSharedWaitOnlyForOwnBuild(t *testing.T) {
	t.Parallel()
	s := testShared(t)
	release, err := s.lock(testDigest, 1001)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	other, err := s.lock(testDigest, 1002)
	if err != nil {
		t.Fatalf("another user's build: %v", err)
	}
	other()
	if err := s.wait(context.Background(), testDigest, 1002, func(Progress) {}); err != nil {
		t.Fatalf("another user's wait: %v, want none", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.wait(ctx, testDigest, 1001, func(Progress) {}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("the same user's wait: %v, want it to wait", err)
	}
}

// The image is exported under a lease of its own, held only while a
// node-local file is copied in: a live exporter's makes another node skip
// (it stores the image), a dead one's is taken over with its partial file
// removed, and an image stored meanwhile is not written again.
func TestSharedExportLease(t *testing.T) {
	t.Parallel()
	s := testShared(t)
	src := filepath.Join(t.TempDir(), "img.squashfs")
	if err := os.WriteFile(src, []byte("squashfs bytes"), 0o600); err != nil {
		t.Fatal(err)
	}
	release, err := s.takeLease(s.exportLockPath(testDigest), 0)
	if err != nil || release == nil {
		t.Fatalf("export lease: %v", err)
	}
	exported := make(chan error, 1)
	notes := make(chan string, 4)
	go func() {
		exported <- s.export(testDigest, src, ImageConfig{}, nil, 1000, func(p Progress) { notes <- p.Message })
	}()
	select {
	case err := <-exported:
		t.Fatalf("exported while another node held the export lease: %v", err)
	case <-time.After(3 * s.poll):
	}
	if e, _ := s.lookup(testDigest); e != nil {
		t.Fatal("exported while another node held the export lease")
	}
	// The other node's export ends (it stored nothing here): this one
	// waited for it, and stores the image itself.
	release()
	if err := <-exported; err != nil {
		t.Fatal(err)
	}
	if e, _ := s.lookup(testDigest); e == nil {
		t.Fatal("not exported once the other node's lease was gone")
	}
	if n := <-notes; !strings.Contains(n, "to finish putting this image into the site image store") {
		t.Errorf("the waiting user was told %q", n)
	}
	os.Remove(s.entryPath(testDigest))
	os.Remove(s.squashfsPath(testDigest))
	// A dead exporter: its lease unrenewed, its partial files left (the
	// squashfs's, and an older record's, written to no more).
	p := s.exportLockPath(testDigest)
	os.WriteFile(p, []byte("node9 1 x 0\n"), 0o600)
	partial := filepath.Join(s.images, ".tmp-"+digestHex(testDigest)+"-1")
	os.WriteFile(partial, []byte("half"), 0o600)
	record := filepath.Join(s.images, "."+digestHex(testDigest)+".json.tmp-1")
	os.WriteFile(record, []byte("{"), 0o600)
	old := time.Now().Add(-5 * s.lease)
	os.Chtimes(record, old, old)
	if err := s.export(testDigest, src, ImageConfig{}, nil, 1000, nil); err != nil {
		t.Fatal(err)
	}
	if e, _ := s.lookup(testDigest); e == nil {
		t.Fatal("a dead exporter's lease was not taken over")
	}
	if _, err := os.Stat(partial); err == nil {
		t.Error("the dead exporter's partial file kept")
	}
	if _, err := os.Stat(record); err == nil {
		t.Error("the dead exporter's partial record kept")
	}
	if _, err := os.Stat(p); err == nil {
		t.Error("the export lease kept after the export")
	}
	// Stored already: not written again.
	before, _ := os.Stat(s.squashfsPath(testDigest))
	if err := s.export(testDigest, src, ImageConfig{}, nil, 1000, nil); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(s.squashfsPath(testDigest)); !os.SameFile(before, after) {
		t.Error("an image already stored was written again")
	}
}

// exportSized stores an image of size bytes for uid under digest n.
func exportSized(t *testing.T, s *sharedStore, n byte, size int, uid uint32) (string, error) {
	t.Helper()
	d := "sha256:" + strings.Repeat(string("0123456789abcdef"[n%16]), 63) + string("0123456789abcdef"[n/16])
	src := filepath.Join(t.TempDir(), "img.squashfs")
	if err := os.WriteFile(src, bytes.Repeat([]byte{n}, size), 0o600); err != nil {
		t.Fatal(err)
	}
	return d, s.export(d, src, ImageConfig{}, nil, uid, nil)
}

// A user's images hold at most their share of the store: one more makes
// their least recently used go, never another user's; an image larger
// than the whole share is not stored; an image in use is kept.
func TestSharedBoundPerUser(t *testing.T) {
	t.Parallel()
	s := testShared(t)
	s.maxPerUser = 300
	old := time.Now().Add(-time.Hour)
	other, err := exportSized(t, s, 1, 200, 2000)
	if err != nil {
		t.Fatal(err)
	}
	os.Chtimes(s.entryPath(other), old, old) // the oldest of all
	var mine []string
	for i := byte(2); i < 5; i++ {
		d, err := exportSized(t, s, i, 100, 1000)
		if err != nil {
			t.Fatal(err)
		}
		at := old.Add(time.Duration(i) * time.Minute)
		os.Chtimes(s.entryPath(d), at, at)
		mine = append(mine, d)
	}
	s.used(mine[0]) // taken from the store since: the newest use
	d, err := exportSized(t, s, 5, 100, 1000)
	if err != nil {
		t.Fatal(err)
	}
	in := func(d string) bool { e, _ := s.lookup(d); return e != nil }
	if !in(d) || !in(mine[0]) || !in(mine[2]) {
		t.Errorf("stored %v, used %v, newer %v: want all three kept", in(d), in(mine[0]), in(mine[2]))
	}
	if in(mine[1]) {
		t.Error("the user's least recently used image was kept past their share")
	}
	if _, err := os.Stat(s.squashfsPath(mine[1])); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("its file stayed: %v", err)
	}
	if !in(other) {
		t.Error("another user's image went for this user's")
	}
	if imgs, _ := s.imagesOf(1000); len(imgs) != 3 {
		t.Errorf("the user holds %d images, want 3", len(imgs))
	}

	big, err := exportSized(t, s, 6, 301, 1000)
	if !errors.Is(err, ErrOverUserShare) || !strings.Contains(err.Error(), "shared_store_max_per_user") {
		t.Errorf("an image larger than the share: %v", err)
	}
	if in(big) || !in(mine[0]) {
		t.Error("an image larger than the share was stored, or made room for")
	}
	if left, _ := filepath.Glob(filepath.Join(s.images, ".tmp-*")); len(left) > 0 {
		t.Errorf("left %v", left)
	}
	if _, err := os.Stat(s.quotaLockPath(1000)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the quota lease stayed: %v", err)
	}
}

// One node at a time stores a user's images: another waits for a live
// node's quota lease, and takes a dead one's over.
func TestSharedQuotaLease(t *testing.T) {
	t.Parallel()
	s := testShared(t)
	s.maxPerUser = 1000
	release, err := s.quotaLease(1000, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	notes := make(chan string, 4)
	go func() {
		d := "sha256:" + strings.Repeat("7", 64)
		src := filepath.Join(t.TempDir(), "img.squashfs")
		os.WriteFile(src, []byte("seven"), 0o600)
		done <- s.export(d, src, ImageConfig{}, nil, 1000, func(p Progress) { notes <- p.Message })
	}()
	select {
	case err := <-done:
		t.Fatalf("stored while another node held the user's lease: %v", err)
	case <-time.After(5 * s.lease):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := <-notes; !strings.Contains(n, "to finish storing another of your images") {
		t.Errorf("the waiting user was told %q", n)
	}

	// A lease nobody renews is a dead node's: taken over, and its
	// partial copy, written to no more, goes; a live one's stays.
	p := s.quotaLockPath(1000)
	os.WriteFile(p, []byte("gone 1 x 1000\n"), 0o600)
	dead := filepath.Join(s.images, ".tmp-dead-1")
	live := filepath.Join(s.images, ".tmp-live-1")
	os.WriteFile(dead, []byte("part"), 0o600)
	os.WriteFile(live, []byte("part"), 0o600)
	old := time.Now().Add(-5 * s.lease)
	os.Chtimes(dead, old, old)
	if _, err := exportSized(t, s, 8, 10, 1000); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a dead node's partial copy stayed: %v", err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a partial copy being written went: %v", err)
	}
}

// A lease this node's earlier daemon left (another pid) is taken over at
// once: that daemon is gone.
func TestSharedOwnNodesOldLease(t *testing.T) {
	t.Parallel()
	s := testShared(t)
	s.maxPerUser = 1000
	s.lease = time.Hour // never by age
	os.WriteFile(s.quotaLockPath(1000), []byte(s.node+" 1 x 1000\n"), 0o600)
	done := make(chan error, 1)
	go func() { _, err := exportSized(t, s, 11, 10, 1000); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waited on a lease this node's earlier daemon left")
	}
}

// An entry of an older daemon names no user and counts to no one; an
// entry whose file is gone holds nothing.
func TestSharedBoundSkipsUnownedEntries(t *testing.T) {
	t.Parallel()
	s := testShared(t)
	s.maxPerUser = 100
	d, err := exportSized(t, s, 9, 60, 1000)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := s.lookup(d)
	e.UID = nil
	s.record(d, e)
	gone, err := exportSized(t, s, 10, 60, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := s.lookup(d); e == nil {
		t.Error("an entry without a user was removed for a user's image")
	}
	os.Remove(s.squashfsPath(gone))
	if imgs, _ := s.imagesOf(1000); len(imgs) != 0 {
		t.Errorf("counted %v", imgs)
	}
}
