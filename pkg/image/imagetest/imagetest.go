// Package imagetest holds the test fixtures that the tests of layer, source,
// squashfs and store share: layer tarballs as a registry serves them, small
// squashfs files, and the skips for tests that need root or a tool. It lives
// in one place so the copies cannot drift apart; import it only from
// _test.go files.
package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root")
	}
}

// RequireBinary skips the test unless name is found in PATH.
func RequireBinary(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%q not found in PATH", name)
	}
}

// TarEntry is one entry of a test layer. The zero Type is a regular file;
// the zero Mode is 0644, or 0755 for a directory.
type TarEntry struct {
	Name     string
	Type     byte
	Body     string
	Mode     int64
	Link     string
	UID, GID int
	Xattrs   map[string]string
	Major    int64
}

// LayerTar writes entries as a tar stream, the way a registry would serve a
// layer (a fixture: nothing is extracted here).
func LayerTar(t testing.TB, entries ...TarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Link,
			Uid: e.UID, Gid: e.GID, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX,
			Devmajor: e.Major}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.Body))
		}
		for k, v := range e.Xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// GzipBytes compresses b with gzip, as a registry serves a layer blob.
func GzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// RunCmd runs name with args and returns its combined output.
func RunCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// MakeSquashfs squashes a small tree of files (path to content) with
// mksquashfs, passing it extra options, and returns the file. It skips the
// test if mksquashfs is not installed.
func MakeSquashfs(t testing.TB, files map[string]string, extra ...string) string {
	t.Helper()
	RequireBinary(t, "mksquashfs")
	src := t.TempDir()
	for name, body := range files {
		p := filepath.Join(src, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "image.sqsh")
	args := append([]string{src, out, "-noappend", "-quiet", "-no-progress"}, extra...)
	if b, err := exec.Command("mksquashfs", args...).CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, b)
	}
	return out
}
