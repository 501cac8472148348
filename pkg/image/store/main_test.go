package store

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.podman.io/storage/pkg/reexec"
)

// TestMain lets the test binary serve as the re-executed helper processes
// (the chrooted layer extractor), as the daemon's
// main does.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	os.Exit(m.Run())
}

var raceEnabled bool

// fastest runs f n times and returns the shortest duration: a latency
// target is about the code, not about what else the machine is doing.
func fastest(t testing.TB, n int, f func() error) time.Duration {
	t.Helper()
	best := time.Duration(1<<63 - 1)
	for range n {
		start := time.Now()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		best = min(best, time.Since(start))
	}
	return best
}

// checkLatency fails if d exceeds limit, except under the race detector.
func checkLatency(t testing.TB, what string, d, limit time.Duration) {
	t.Helper()
	t.Logf("%s: %s", what, d)
	if d > limit && !raceEnabled {
		t.Errorf("%s took %s, want < %s", what, d, limit)
	}
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root")
	}
}

func requireBinary(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%q not found in PATH", name)
	}
}

// tarEntry is one entry of a test layer.
type tarEntry struct {
	name     string
	typ      byte
	body     string
	mode     int64
	link     string
	uid, gid int
	xattrs   map[string]string
	major    int64
}

// layerTar writes entries as a tar stream, the way a registry would serve a
// layer (a fixture: nothing is extracted here).
func layerTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			Uid: e.uid, Gid: e.gid, ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX,
			Devmajor: e.major}
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
			h.Size = int64(len(e.body))
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
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

func runCmd(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}

// makeSquashfs squashes a small tree and returns the file.
func makeSquashfs(t *testing.T, files map[string]string, extra ...string) string {
	t.Helper()
	requireBinary(t, "mksquashfs")
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
