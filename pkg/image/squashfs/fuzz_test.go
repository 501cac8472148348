package squashfs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// Fuzz targets for the readers of a squashfs file a user names: its
// superblock, xattr tables and the listing of its tree. `go test
// -fuzz=FuzzX` runs one.

// FuzzSquashfs: the superblock and xattr readers take any bytes without
// panicking or running away, and lz4Block stays within its bound. Seeds
// are squashfs files made by mksquashfs, when it is installed.
func FuzzSquashfs(f *testing.F) {
	f.Add([]byte("hsqs"))
	if _, err := exec.LookPath("mksquashfs"); err == nil {
		for _, comp := range []string{"gzip", "xz", "lz4", "zstd", "lzo"} {
			dir := f.TempDir()
			src := filepath.Join(dir, "src")
			if err := os.MkdirAll(filepath.Join(src, "d"), 0o755); err != nil {
				f.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(src, "d", "f"), []byte("x"), 0o644); err != nil {
				f.Fatal(err)
			}
			out := filepath.Join(dir, "s.sqsh")
			if o, err := exec.Command("mksquashfs", src, out, "-quiet", "-no-progress", "-comp", comp,
				"-p", "x d 755 0 0", "-p", "dev c 600 0 0 1 3").CombinedOutput(); err != nil {
				f.Fatalf("mksquashfs: %v: %s", err, o)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bytes.NewReader(b)
		if sb, err := readSuperblock(r, int64(len(b))); err == nil {
			_ = checkXattrs(r, int64(len(b)), sb)
		}
		if out, err := lz4Block(b, metaBlockSize); err == nil && len(out) > metaBlockSize {
			t.Fatalf("lz4Block returned %d bytes", len(out))
		}
	})
}

// FuzzCheckListing: any listing is read to its end, and a device line is
// always caught.
func FuzzCheckListing(f *testing.F) {
	f.Add("drwxr-xr-x 0/0 27 2026-12-01 06:54 /bin\n-rwxr-xr-x 0/0 3 2026-12-01 06:54 /bin/sh\n")
	f.Add("crw-rw-rw- 0/0 1,  3 2026-12-01 06:54 /dev/null\n")
	f.Add("-rwsr-xr-x 0/0 3 2026-12-01 06:54 /bin/su\n")
	f.Fuzz(func(t *testing.T, s string) {
		_ = checkListing(strings.NewReader(s))
		dev := s + "\ncrw-rw-rw- 0/0 1,  3 2026-12-01 06:54 /dev/null\n"
		if strings.Count(s, "\n") < 1000 && !strings.ContainsRune(s, '\r') {
			if err := checkListing(strings.NewReader(dev)); !errors.Is(err, image.ErrUnsafeFile) && !errors.Is(err, image.ErrNotSquashfs) {
				t.Fatalf("a device line after %q passed: %v", s, err)
			}
		}
	})
}
