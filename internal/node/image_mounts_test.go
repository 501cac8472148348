package node

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// An image stays mounted, pinned, for the linger after its last user, is
// shared again if asked meanwhile, and goes (unpinned) after it.
func TestImageMountsLinger(t *testing.T) {
	requireRoot(t)
	images := &fakeImages{}
	img := &image{Digest: "sha256:feed", Path: testSquashfs(t)}
	im := newImageMounts(200*time.Millisecond, images.pin, slog.New(slog.NewTextHandler(io.Discard, nil)))

	root, err := im.acquire(img)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/os-release")); err != nil || string(b) != "ID=phpc-unit\n" {
		t.Fatalf("image root %s: %q %v", root, b, err)
	}
	im.release(img.Digest)
	if im.root(img.Digest) != root || images.pinned != 1 {
		t.Fatalf("right after its last user: root %q, pinned %d; want still mounted and pinned", im.root(img.Digest), images.pinned)
	}
	again, err := im.acquire(img)
	if err != nil || again != root || images.pinned != 0 {
		t.Fatalf("used again while lingering: %q (want %q), pinned %d, %v", again, root, images.pinned, err)
	}
	im.release(img.Digest)
	time.Sleep(500 * time.Millisecond)
	if r := im.root(img.Digest); r != "" || images.pinned != 0 {
		t.Errorf("after the linger: root %q, pinned %d; want gone", r, images.pinned)
	}
	if _, err := os.Stat(filepath.Join(root, "etc")); err == nil {
		t.Errorf("%s still reaches the image", root)
	}
}

// dropIdle drops only the lingering mounts it is told (a user's prune: the
// images only they use), unpinning those; the others stay mounted and
// pinned, and one a container uses is never dropped.
func TestImageMountsDropIdle(t *testing.T) {
	requireRoot(t)
	images := &fakeImages{}
	path := testSquashfs(t)
	mine, theirs, busy := &image{Digest: "sha256:mine", Path: path}, &image{Digest: "sha256:theirs", Path: path}, &image{Digest: "sha256:busy", Path: path}
	im := newImageMounts(time.Minute, images.pin, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, img := range []*image{mine, theirs, busy} {
		if _, err := im.acquire(img); err != nil {
			t.Fatal(err)
		}
	}
	im.release(mine.Digest)
	im.release(theirs.Digest)
	if images.pinned != 2 {
		t.Fatalf("lingering: %d pinned, want 2", images.pinned)
	}
	n := im.dropIdle(func(d string) bool { return d != theirs.Digest })
	if n != 1 || im.root(mine.Digest) != "" {
		t.Errorf("dropped %d, mine at %q; want mine (only) gone", n, im.root(mine.Digest))
	}
	if im.root(theirs.Digest) == "" || images.pinned != 1 {
		t.Errorf("theirs at %q, %d pinned; want still mounted and pinned", im.root(theirs.Digest), images.pinned)
	}
	if im.root(busy.Digest) == "" {
		t.Error("a mount in use was dropped")
	}
	if n := im.dropIdle(func(string) bool { return true }); n != 1 || im.root(theirs.Digest) != "" || images.pinned != 0 {
		t.Errorf("root's: dropped %d, theirs at %q, %d pinned; want theirs gone", n, im.root(theirs.Digest), images.pinned)
	}
	im.release(busy.Digest)
	im.dropIdle(func(string) bool { return true })
}
