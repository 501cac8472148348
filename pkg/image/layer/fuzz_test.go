package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// FuzzScanLayer: the tar scanner takes any bytes, refuses device nodes
// and trusted.* xattrs whatever else the layer holds, and passes on
// exactly the bytes it accepted.
func FuzzScanLayer(f *testing.F) {
	f.Add(imagetest.LayerTar(f, imagetest.TarEntry{Name: "a", Body: "x"}, imagetest.TarEntry{Name: "d/", Type: tar.TypeDir}, imagetest.TarEntry{Name: "l", Type: tar.TypeSymlink, Link: "/etc"}))
	f.Add(imagetest.LayerTar(f, imagetest.TarEntry{Name: "l", Type: tar.TypeSymlink, Link: "/etc"}, imagetest.TarEntry{Name: "l/passwd", Body: "x"}))
	f.Add(imagetest.LayerTar(f, imagetest.TarEntry{Name: "dev", Type: tar.TypeChar, Major: 1}))
	f.Add(imagetest.LayerTar(f, imagetest.TarEntry{Name: "x", Body: "y", Xattrs: map[string]string{"trusted.overlay.opaque": "y"}}))
	f.Add(imagetest.LayerTar(f, imagetest.TarEntry{Name: "../x", Body: "y"}, imagetest.TarEntry{Name: ".wh..wh..opq"}))
	root := f.TempDir()
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
	})
}

// FuzzStream: the union takes any two layers of bytes, and whatever it
// passes on is a well-formed tar of clean relative paths, each once, with
// no device node and no trusted.* xattr.
func FuzzStream(f *testing.F) {
	f.Add(imagetest.LayerTar(f, imagetest.TarEntry{Name: "a/b", Body: "x"}, imagetest.TarEntry{Name: "l", Type: tar.TypeSymlink, Link: "a"}),
		imagetest.LayerTar(f, imagetest.TarEntry{Name: "a/.wh.b"}, imagetest.TarEntry{Name: "h", Type: tar.TypeLink, Link: "a/b"}))
	f.Add(imagetest.LayerTar(f, imagetest.TarEntry{Name: "d/", Type: tar.TypeDir}),
		imagetest.LayerTar(f, imagetest.TarEntry{Name: "d/.wh..wh..opq"}, imagetest.TarEntry{Name: "dev", Type: tar.TypeChar, Major: 1}))
	f.Fuzz(func(t *testing.T, lower, upper []byte) {
		var out bytes.Buffer
		tw := tar.NewWriter(&out)
		u := newUnion()
		buf := make([]byte, 32<<10)
		for i, b := range [][]byte{upper, lower} {
			u.startLayer(1 - i)
			if err := streamTar(context.Background(), u, bytes.NewReader(b), tw, tw, buf); err != nil {
				return
			}
			if err := u.endLayer(); err != nil {
				return
			}
		}
		if u.finish() != nil || tw.Close() != nil {
			return
		}
		seen := map[string]bool{}
		tr := tar.NewReader(&out)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatalf("passed on a broken tar: %v", err)
			}
			name := strings.TrimSuffix(h.Name, "/")
			if name != path.Clean(name) || path.IsAbs(name) || escapes(name) || seen[name] {
				t.Fatalf("passed on %q (seen: %v)", h.Name, seen[name])
			}
			seen[name] = true
			if h.Typeflag == tar.TypeChar || h.Typeflag == tar.TypeBlock {
				t.Fatalf("device %q passed on", h.Name)
			}
			for k := range h.PAXRecords {
				if strings.HasPrefix(k, "SCHILY.xattr.trusted.") {
					t.Fatalf("xattr %q passed on", k)
				}
			}
		}
	})
}
