package layer

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

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
