package squash

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// Fuzz targets for the parsers of what a user sends (image references:
// ref_fuzz_test.go): auth.json, squashfs files (superblock, xattr tables, the listing of
// their tree) and tar layers and archives. `go test -fuzz=FuzzX` runs one.

// FuzzSanitizeAuth: the sanitised file is a JSON object with "auths"
// only, names no helper, and sanitises to itself.
func FuzzSanitizeAuth(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `{"auths":{"r.io":{"auth":"dTpw"}}}`, `{"auths":{"r.io":{}},"credsStore":"desktop"}`,
		`{"auths":{},"credHelpers":{"r.io":"ecr-login"}}`, `{"auths":null}`, `{"auths":{"r.io":{"identitytoken":"t","auth":"x"}}}`,
		`[]`, `"x"`, `{"auths":{"":{"auth":"x"}}}`, `{"auths":{"r.io":{"auth":1}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		clean, _, err := sanitizeAuth(b)
		if err != nil {
			if !errors.Is(err, image.ErrUnauthorized) {
				t.Fatalf("%q: %v does not wrap image.ErrUnauthorized", b, err)
			}
			return
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(clean, &top); err != nil || len(top) != 1 || top["auths"] == nil {
			t.Fatalf("%q: sanitised to %s", b, clean)
		}
		again, dropped, err := sanitizeAuth(clean)
		if err != nil || dropped || !bytes.Equal(again, clean) {
			t.Fatalf("%q: %s sanitises to %s, %v, %v", b, clean, again, dropped, err)
		}
	})
}

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

// FuzzScanLayer: the tar scanner takes any bytes, refuses device nodes
// and trusted.* xattrs whatever else the layer holds, and passes on
// exactly the bytes it accepted. checkArchive takes any bytes too.
func FuzzScanLayer(f *testing.F) {
	f.Add(layerTar(f, tarEntry{name: "a", body: "x"}, tarEntry{name: "d/", typ: tar.TypeDir}, tarEntry{name: "l", typ: tar.TypeSymlink, link: "/etc"}))
	f.Add(layerTar(f, tarEntry{name: "l", typ: tar.TypeSymlink, link: "/etc"}, tarEntry{name: "l/passwd", body: "x"}))
	f.Add(layerTar(f, tarEntry{name: "dev", typ: tar.TypeChar, major: 1}))
	f.Add(layerTar(f, tarEntry{name: "x", body: "y", xattrs: map[string]string{"trusted.overlay.opaque": "y"}}))
	f.Add(layerTar(f, tarEntry{name: "../x", body: "y"}, tarEntry{name: ".wh..wh..opq"}))
	root := f.TempDir()
	archive := filepath.Join(f.TempDir(), "a.tar")
	f.Fuzz(func(t *testing.T, b []byte) {
		var out bytes.Buffer
		start := time.Now()
		err := scanLayer(newScanner(root), bytes.NewReader(b), &out)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("scanLayer took %s over %d bytes", d, len(b))
		}
		if err == nil && !bytes.Equal(out.Bytes(), b) {
			t.Fatalf("accepted, but passed on %d of %d bytes", out.Len(), len(b))
		}
		if err == nil {
			tr := tar.NewReader(bytes.NewReader(b))
			for {
				h, err := tr.Next()
				if err != nil {
					break
				}
				if h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
					t.Fatalf("device %q accepted", h.Name)
				}
				for k := range h.PAXRecords {
					if strings.HasPrefix(k, "SCHILY.xattr.trusted.") {
						t.Fatalf("xattr %q accepted", k)
					}
				}
			}
		}
		if err := os.WriteFile(archive, b, 0o600); err != nil {
			t.Fatal(err)
		}
		_ = checkArchive(archive)
	})
}
