package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

func reservedNow(c *Cache) (reserved, images int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reserved, c.heldLocked() - c.reserved
}

// Reservations made at once never add up past MaxBytes, and give their
// room back.
func TestReserveConcurrent(t *testing.T) {
	c := openTestCache(t, nil, func(o *Options) { o.MaxBytes = 1 << 20 })
	var mu sync.Mutex
	var got []*reservation
	var refused int
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.reserve(300<<10, "the test image")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if !errors.Is(err, image.ErrNoSpace) || !strings.Contains(err.Error(), "cache_max_size 1M") {
					t.Errorf("refusal: %v", err)
				}
				refused++
				return
			}
			got = append(got, r)
		}()
	}
	wg.Wait()
	if len(got) != 3 || refused != 7 {
		t.Fatalf("%d reservations of 300K in 1M, %d refused; want 3 and 7", len(got), refused)
	}
	if r, _ := reservedNow(c); r != 900<<10 {
		t.Errorf("reserved %d, want %d", r, 900<<10)
	}
	// Growing past the limit fails and keeps what was held.
	if err := got[0].grow(500<<10, "the test image"); !errors.Is(err, image.ErrNoSpace) {
		t.Errorf("grow past the limit: %v", err)
	}
	for _, r := range got {
		r.release()
		r.release() // idempotent
	}
	if r, _ := reservedNow(c); r != 0 {
		t.Errorf("reserved %d after release, want 0", r)
	}
	if _, err := c.reserve(2<<20, "the test image"); err == nil || !strings.Contains(err.Error(), "more than the whole image cache") {
		t.Errorf("larger than the cache: %v", err)
	}
	r, err := c.reserve(1<<20, "the test image")
	if err != nil {
		t.Fatalf("the whole cache, once free: %v", err)
	}
	r.release()
}

// sparseSquashfs is the review's attack file: a small squashfs made size
// bytes long, sparse, with its last byte written.
func sparseSquashfs(t *testing.T, dir, name string, size int64, last byte) string {
	t.Helper()
	b, err := os.ReadFile(imagetest.MakeSquashfs(t, map[string]string{"etc/os-release": "ID=" + name + "\n"}))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{last}, size-1); err != nil {
		t.Fatal(err)
	}
	return p
}

// The review's finding: one user's two sparse files pulled at once must
// not take the cache past MaxBytes; the one that does not fit is refused
// saying why; another user's image afterwards evicts to make room.
func TestReserveSparseFilesAtOnce(t *testing.T) {
	const size = 8 << 20
	c := openTestCache(t, nil, func(o *Options) { o.MaxBytes = size + size/2 })
	clock := time.Now()
	var clockMu sync.Mutex
	c.now = func() time.Time { clockMu.Lock(); defer clockMu.Unlock(); return clock }
	dir := publicDir(t, 0o755)
	big5 := sparseSquashfs(t, dir, "big5.sqsh", size, '5')
	big6 := sparseSquashfs(t, dir, "big6.sqsh", size, '6')
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []string{big5, big6} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Get(context.Background(), p, PullOptions{UID: 1000, GID: 1000})
		}()
	}
	wg.Wait()
	var ok int
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, image.ErrNoSpace):
			assertOneLine(t, err, []string{big5, big6}[i], "cache_max_size 12M", "pulls in progress", "raise cache_max_size")
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 {
		t.Fatalf("%d of the two pulls worked (%v); want 1", ok, errs)
	}
	if r, imgs := reservedNow(c); r != 0 || imgs != size || imgs > c.o.MaxBytes {
		t.Errorf("reserved %d, images %d; want 0 and %d", r, imgs, size)
	}
	// Another user's image: the first user's, unused past the grace,
	// makes room for it.
	clockMu.Lock()
	clock = clock.Add(2 * reserveGrace)
	clockMu.Unlock()
	other := sparseSquashfs(t, dir, "other.sqsh", 6<<20, 'o')
	if _, err := c.Get(context.Background(), other, PullOptions{UID: 1001, GID: 1001}); err != nil {
		t.Fatalf("another user's pull afterwards: %v", err)
	}
	if imgs := c.List(0); len(imgs) != 1 || imgs[0].Size != 6<<20 {
		t.Errorf("after the other user's pull: %+v", imgs)
	}
}

// A pinned image is not evicted for room: a pull that would need it
// gone is refused, and one that fits beside it works. A failed copy gives
// its room back.
func TestReservePinnedAndFailure(t *testing.T) {
	const size = 4 << 20
	c := openTestCache(t, nil, func(o *Options) { o.MaxBytes = 3 * size / 2 })
	clock := time.Now()
	c.now = func() time.Time { return clock }
	dir := publicDir(t, 0o755)
	a, err := c.Get(context.Background(), sparseSquashfs(t, dir, "a.sqsh", size, 'a'), PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	unpin, err := c.Pin(a.Digest)
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(time.Hour)
	_, err = c.Get(context.Background(), sparseSquashfs(t, dir, "b.sqsh", size, 'b'), PullOptions{})
	if !errors.Is(err, image.ErrNoSpace) || !strings.Contains(err.Error(), "4M held by images in use") {
		t.Fatalf("beside a pinned image: %v", err)
	}
	if r, _ := reservedNow(c); r != 0 {
		t.Errorf("reserved %d after the refusal", r)
	}
	// A file that is not squashfs fails after its copy: its room is back.
	bad := filepath.Join(dir, "bad.sqsh")
	if err := os.WriteFile(bad, []byte(strings.Repeat("not squashfs\n", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), bad, PullOptions{}); !errors.Is(err, image.ErrNotSquashfs) {
		t.Fatalf("bad file: %v", err)
	}
	if r, _ := reservedNow(c); r != 0 {
		t.Errorf("reserved %d after a failed copy", r)
	}
	unpin()
	clock = clock.Add(time.Hour)
	if _, err := c.Get(context.Background(), sparseSquashfs(t, dir, "b2.sqsh", size, 'c'), PullOptions{}); err != nil {
		t.Fatalf("once unpinned: %v", err)
	}
	if imgs := c.List(0); len(imgs) != 1 || imgs[0].Digest == a.Digest {
		t.Errorf("the unpinned image was not evicted for room: %v", digests(imgs))
	}
}

// A registry pull reserves its layers, then its unpacked size, and holds
// only its real size once published.
func TestReservePull(t *testing.T) {
	reg := newFakeRegistry(t)
	ref := reg.add("test/base", "1", newTestImage(t, baseConfig, baseLayers()...))
	c := openTestCache(t, []string{reg.host}, func(o *Options) { o.MaxBytes = 16 << 10 })
	// Too small for the image's unpacked bound: refused, nothing held.
	_, err := c.Get(context.Background(), ref, PullOptions{})
	if !errors.Is(err, image.ErrNoSpace) || !strings.Contains(err.Error(), "unpacked to") {
		t.Fatalf("pull into a 16K cache: %v", err)
	}
	if r, imgs := reservedNow(c); r != 0 || imgs != 0 {
		t.Errorf("after the refusal: reserved %d, images %d", r, imgs)
	}
	assertClean(t, c)
	c.o.MaxBytes = 1 << 20
	img, err := c.Get(context.Background(), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r, imgs := reservedNow(c); r != 0 || imgs != img.Size {
		t.Errorf("after the pull: reserved %d, images %d; want 0 and %d", r, imgs, img.Size)
	}
}
