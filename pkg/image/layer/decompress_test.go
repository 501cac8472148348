package layer

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A filter's stream is the program's output, and ends in io.EOF only when
// the program succeeded: a decompressor that fails half way must not look
// like the end of the layer's tar.
func TestFilter(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := bytes.Repeat([]byte("layer data "), 100000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(want)
	zw.Close()
	blob := filepath.Join(dir, "blob")
	os.WriteFile(blob, gz.Bytes(), 0o600)
	open := func() *os.File {
		f, err := os.Open(blob)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	gzipPath, err := exec.LookPath("gzip")
	if err != nil {
		t.Skipf("%q not found in PATH", "gzip")
	}

	rc, err := filter(gzipPath, open(), "-d", "-c")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("gzip -d: %d bytes, %v; want %d bytes", len(got), err, len(want))
	}

	// Cut short: the stream ends in the program's error.
	short := filepath.Join(dir, "short")
	os.WriteFile(short, gz.Bytes()[:gz.Len()/2], 0o600)
	f, _ := os.Open(short)
	defer f.Close()
	rc, err = filter(gzipPath, f, "-d", "-c")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Errorf("truncated blob: %v; want gzip's error", err)
	}

	// Closed before its end: the program is killed and reaped.
	sh, _ := exec.LookPath("sh")
	rc, err = filter(sh, open(), "-c", "echo $$; exec sleep 100")
	if err != nil {
		t.Fatal(err)
	}
	line := make([]byte, 32)
	n, _ := rc.Read(line)
	pid := strings.TrimSpace(string(line[:n]))
	start := time.Now()
	rc.Close()
	if time.Since(start) > 5*time.Second {
		t.Error("Close waited for the program")
	}
	if _, err := os.Stat("/proc/" + pid); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("program %s still exists after Close: %v", pid, err)
	}
}

// decompress takes igzip for gzip when it is installed, and hands every
// other blob to containers/storage; either way the tar comes out whole.
func TestDecompress(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	want := bytes.Repeat([]byte("0123456789"), 50000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(want)
	zw.Close()
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"gzip", gz.Bytes(), map[bool]string{true: "igzip", false: "storage"}[igzip() != ""]},
		{"plain", want, "storage"},
	} {
		p := filepath.Join(dir, tc.name)
		os.WriteFile(p, tc.data, 0o600)
		f, _ := os.Open(p)
		rc, name, err := decompress(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(rc)
		rc.Close()
		f.Close()
		if err != nil || !bytes.Equal(got, want) || name != tc.want {
			t.Errorf("%s: %d bytes by %s, %v; want %d bytes by %s", tc.name, len(got), name, err, len(want), tc.want)
		}
	}
}

// An igzip that cannot be executed leaves the layer to containers/storage.
// (Not parallel: it swaps igzip, which the parallel tests read after.)
func TestDecompressWithoutAWorkingIgzip(t *testing.T) {
	saved := igzip
	defer func() { igzip = saved }()
	dir := t.TempDir()
	broken := filepath.Join(dir, "igzip")
	os.WriteFile(broken, []byte("not a program"), 0o644) // not executable
	igzip = func() string { return broken }
	want := bytes.Repeat([]byte("abc"), 10000)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(want)
	zw.Close()
	p := filepath.Join(dir, "blob")
	os.WriteFile(p, gz.Bytes(), 0o600)
	f, _ := os.Open(p)
	defer f.Close()
	rc, name, err := decompress(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, want) || name != "storage" {
		t.Errorf("%d bytes by %s, %v; want %d bytes by storage", len(got), name, err, len(want))
	}
}
