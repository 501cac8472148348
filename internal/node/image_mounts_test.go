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
