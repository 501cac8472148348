package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/charge"
	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// applyAll applies layers (gzip-compressed as a registry serves them) onto
// a fresh rootfs and returns it with the first error.
func applyAll(t *testing.T, layers ...[]imagetest.TarEntry) (string, error) {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		blob := filepath.Join(dir, "blob")
		if err := os.WriteFile(blob, imagetest.GzipBytes(t, imagetest.LayerTar(t, l...)), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := Apply(context.Background(), rootfs, blob, nil); err != nil {
			return rootfs, err
		}
		_ = i
	}
	return rootfs, nil
}

func TestApplyLayerRefusesUnsafeEntries(t *testing.T) {
	imagetest.RequireRoot(t)
	host := t.TempDir() // stands for the host: nothing may appear in it
	cases := []struct {
		name   string
		layers [][]imagetest.TarEntry
		want   string // in the error
	}{
		{"dotdot path", [][]imagetest.TarEntry{{{Name: "../escaped", Body: "x"}}}, `entry "../escaped": path leaves the image root`},
		{"dotdot inside path", [][]imagetest.TarEntry{{{Name: "a/../../escaped", Body: "x"}}}, "path leaves the image root"},
		{"absolute symlink then write through it", [][]imagetest.TarEntry{{
			{Name: "evil", Type: tar.TypeSymlink, Link: host},
			{Name: "evil/pwned", Body: "x"},
		}}, `goes through absolute symlink "evil" -> "` + host + `"`},
		{"absolute symlink in a lower layer", [][]imagetest.TarEntry{
			{{Name: "etc", Type: tar.TypeDir}, {Name: "etc/evil", Type: tar.TypeSymlink, Link: host}},
			{{Name: "etc/evil/pwned", Body: "x"}},
		}, `goes through absolute symlink "etc/evil"`},
		{"relative symlink leaving the root", [][]imagetest.TarEntry{{
			{Name: "a", Type: tar.TypeDir},
			{Name: "a/up", Type: tar.TypeSymlink, Link: "../../../.."},
			{Name: "a/up/pwned", Body: "x"},
		}}, `goes through symlink "a/up" -> "../../../..", which leaves the image root`},
		{"whiteout through a symlink", [][]imagetest.TarEntry{{
			{Name: "evil", Type: tar.TypeSymlink, Link: host},
			{Name: "evil/.wh.victim"},
		}}, "goes through absolute symlink"},
		{"hard link to a host file", [][]imagetest.TarEntry{{{Name: "shadow", Type: tar.TypeLink, Link: "../../../../etc/shadow"}}}, "hard link to \"../../../../etc/shadow\", outside the image root"},
		{"hard link through a symlink", [][]imagetest.TarEntry{{
			{Name: "etc", Type: tar.TypeSymlink, Link: "/etc"},
			{Name: "shadow", Type: tar.TypeLink, Link: "etc/shadow"},
		}}, `goes through absolute symlink "etc" -> "/etc"`},
		{"char device", [][]imagetest.TarEntry{{{Name: "dev/mem", Type: tar.TypeChar, Major: 1}}}, "is a character device (1,0): images may not contain device nodes"},
		{"block device", [][]imagetest.TarEntry{{{Name: "sda", Type: tar.TypeBlock, Major: 8}}}, "is a block device"},
		{"overlay whiteout device", [][]imagetest.TarEntry{{{Name: "gone", Type: tar.TypeChar}}}, "character device (0,0)"},
		{"overlay xattr", [][]imagetest.TarEntry{{{Name: "d", Type: tar.TypeDir, Xattrs: map[string]string{"trusted.overlay.redirect": "/etc"}}}}, `xattr "trusted.overlay.redirect": images may not carry trusted.* xattrs`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := applyAll(t, tc.layers...)
			if err == nil {
				t.Fatal("applied; want a refusal")
			}
			if !errors.Is(err, image.ErrUnsafeLayer) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q; want image.ErrUnsafeLayer containing %q", err, tc.want)
			}
			if ents, _ := os.ReadDir(host); len(ents) != 0 {
				t.Fatalf("the host directory got %v", ents[0].Name())
			}
		})
	}
}

func TestApplyLayerSemantics(t *testing.T) {
	imagetest.RequireRoot(t)
	rootfs, err := applyAll(t,
		[]imagetest.TarEntry{
			{Name: "bin", Type: tar.TypeDir},
			{Name: "bin/su", Body: "setuid", Mode: 0o4755},
			{Name: "bin/tool", Body: "tool", UID: 1234, GID: 5678, Xattrs: map[string]string{"user.note": "kept"}},
			{Name: "bin/hard", Type: tar.TypeLink, Link: "bin/tool", UID: 1234, GID: 5678}, // tar writers repeat the owner
			{Name: "etc", Type: tar.TypeDir},
			{Name: "etc/keep", Body: "keep"},
			{Name: "etc/remove", Body: "remove"},
			{Name: "opq", Type: tar.TypeDir},
			{Name: "opq/old", Body: "old"},
			{Name: "usr", Type: tar.TypeDir},
			{Name: "usr/lib", Type: tar.TypeDir},
			{Name: "lib", Type: tar.TypeSymlink, Link: "usr/lib"},
			{Name: "abs", Type: tar.TypeSymlink, Link: "/usr/lib/libx.so"},
			{Name: "fifo", Type: tar.TypeFifo},
		},
		[]imagetest.TarEntry{
			{Name: "etc/.wh.remove"},
			{Name: "opq/.wh..wh..opq"},
			{Name: "opq/new", Body: "new"},
			// a relative symlink that stays inside the root may be written through
			{Name: "lib/libx.so", Body: "lib"},
		},
	)
	if err != nil {
		t.Fatal(err)
	}
	mustStat := func(p string) os.FileInfo {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(rootfs, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi
	}
	if fi := mustStat("bin/su"); fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("bin/su lost its setuid bit: %v", fi.Mode())
	}
	st := mustStat("bin/tool").Sys().(*syscall.Stat_t)
	if st.Uid != 1234 || st.Gid != 5678 || st.Nlink != 2 {
		t.Errorf("bin/tool: uid %d gid %d nlink %d; want 1234 5678 2", st.Uid, st.Gid, st.Nlink)
	}
	buf := make([]byte, 64)
	if n, err := unix.Lgetxattr(filepath.Join(rootfs, "bin/tool"), "user.note", buf); err != nil || string(buf[:n]) != "kept" {
		t.Errorf("xattr user.note: %q, %v", buf[:n], err)
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "etc/remove")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("whiteout: etc/remove still there (%v)", err)
	}
	mustStat("etc/keep")
	if _, err := os.Lstat(filepath.Join(rootfs, "opq/old")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("opaque dir: opq/old still there (%v)", err)
	}
	mustStat("opq/new")
	mustStat("usr/lib/libx.so")
	if l, _ := os.Readlink(filepath.Join(rootfs, "abs")); l != "/usr/lib/libx.so" {
		t.Errorf("abs -> %q", l)
	}
	if fi := mustStat("fifo"); fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v", fi.Mode())
	}
}

// A cancelled Apply kills its extractor: once it returns, the layer's
// unpacking has stopped part-way, and nothing writes into the root any
// more. The layer is smaller than the pipe to the extractor, and slow to
// unpack (deep paths): cancelling cannot stop it by starving it of input,
// as it did with containers/storage's chrootarchive, whose child ran on.
func TestApplyCancelStopsExtractor(t *testing.T) {
	imagetest.RequireRoot(t)
	const depth, files = 300, 200
	var entries []imagetest.TarEntry
	deep := "a"
	for i := 0; i < depth; i++ {
		entries = append(entries, imagetest.TarEntry{Name: deep, Type: tar.TypeDir})
		if i < depth-1 {
			deep += "/a"
		}
	}
	for i := 0; i < files; i++ {
		entries = append(entries, imagetest.TarEntry{Name: fmt.Sprintf("%s/f%03d", deep, i), Body: "x"})
	}
	layer := imagetest.LayerTar(t, entries...)
	if len(layer) >= 1<<20 {
		t.Fatalf("the layer (%d bytes) must fit in the pipe to the extractor", len(layer))
	}
	dir := t.TempDir()
	blob := filepath.Join(dir, "blob")
	if err := os.WriteFile(blob, layer, 0o600); err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Lstat(filepath.Join(rootfs, deep, "f000")); err == nil {
				cancel()
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	start := time.Now()
	err := Apply(ctx, rootfs, blob, nil)
	t.Logf("Apply returned after %v: %v", time.Since(start), err)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Apply = %v, want context.Canceled", err)
	}
	count := func() int {
		names, err := os.ReadDir(filepath.Join(rootfs, deep))
		if err != nil {
			t.Fatal(err)
		}
		return len(names)
	}
	before := count()
	if before >= files {
		t.Fatalf("the whole layer was unpacked (%d files) before Apply returned", before)
	}
	time.Sleep(300 * time.Millisecond)
	if after := count(); after != before {
		t.Fatalf("the root still grows after Apply returned: %d files, then %d", before, after)
	}
}

// The extractor is charged to what the pull works for, as the squashers
// are; one that cannot be placed is killed, and the layer fails.
func TestApplyChargesExtractor(t *testing.T) {
	imagetest.RequireRoot(t)
	var placed []string
	ctx := charge.With(context.Background(), func(pid int) error {
		cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		placed = append(placed, strings.Split(string(cmd), "\x00")[0])
		return err
	})
	layer := filepath.Join(t.TempDir(), "blob")
	if err := os.WriteFile(layer, imagetest.LayerTar(t, imagetest.TarEntry{Name: "f", Body: "x"}), 0o600); err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	if err := Apply(ctx, rootfs, layer, nil); err != nil {
		t.Fatal(err)
	}
	if len(placed) != 1 || placed[0] != extractorName {
		t.Fatalf("placed %q, want the extractor once", placed)
	}
	boom := errors.New("no cgroup")
	ctx = charge.With(context.Background(), func(int) error { return boom })
	rootfs = t.TempDir()
	if err := Apply(ctx, rootfs, layer, nil); !errors.Is(err, boom) {
		t.Fatalf("Apply with a failing placer = %v, want its error", err)
	}
}
