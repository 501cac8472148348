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
)

// applyAll applies layers (gzip-compressed as a registry serves them) onto
// a fresh rootfs and returns it with the first error.
func applyAll(t *testing.T, layers ...[]tarEntry) (string, error) {
	t.Helper()
	dir := t.TempDir()
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, l := range layers {
		blob := filepath.Join(dir, "blob")
		if err := os.WriteFile(blob, gzipBytes(t, layerTar(t, l...)), 0o600); err != nil {
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
	requireRoot(t)
	host := t.TempDir() // stands for the host: nothing may appear in it
	cases := []struct {
		name   string
		layers [][]tarEntry
		want   string // in the error
	}{
		{"dotdot path", [][]tarEntry{{{name: "../escaped", body: "x"}}}, `entry "../escaped": path leaves the image root`},
		{"dotdot inside path", [][]tarEntry{{{name: "a/../../escaped", body: "x"}}}, "path leaves the image root"},
		{"absolute symlink then write through it", [][]tarEntry{{
			{name: "evil", typ: tar.TypeSymlink, link: host},
			{name: "evil/pwned", body: "x"},
		}}, `goes through absolute symlink "evil" -> "` + host + `"`},
		{"absolute symlink in a lower layer", [][]tarEntry{
			{{name: "etc", typ: tar.TypeDir}, {name: "etc/evil", typ: tar.TypeSymlink, link: host}},
			{{name: "etc/evil/pwned", body: "x"}},
		}, `goes through absolute symlink "etc/evil"`},
		{"relative symlink leaving the root", [][]tarEntry{{
			{name: "a", typ: tar.TypeDir},
			{name: "a/up", typ: tar.TypeSymlink, link: "../../../.."},
			{name: "a/up/pwned", body: "x"},
		}}, `goes through symlink "a/up" -> "../../../..", which leaves the image root`},
		{"whiteout through a symlink", [][]tarEntry{{
			{name: "evil", typ: tar.TypeSymlink, link: host},
			{name: "evil/.wh.victim"},
		}}, "goes through absolute symlink"},
		{"hard link to a host file", [][]tarEntry{{{name: "shadow", typ: tar.TypeLink, link: "../../../../etc/shadow"}}}, "hard link to \"../../../../etc/shadow\", outside the image root"},
		{"hard link through a symlink", [][]tarEntry{{
			{name: "etc", typ: tar.TypeSymlink, link: "/etc"},
			{name: "shadow", typ: tar.TypeLink, link: "etc/shadow"},
		}}, `goes through absolute symlink "etc" -> "/etc"`},
		{"char device", [][]tarEntry{{{name: "dev/mem", typ: tar.TypeChar, major: 1}}}, "is a character device (1,0): images may not contain device nodes"},
		{"block device", [][]tarEntry{{{name: "sda", typ: tar.TypeBlock, major: 8}}}, "is a block device"},
		{"overlay whiteout device", [][]tarEntry{{{name: "gone", typ: tar.TypeChar}}}, "character device (0,0)"},
		{"overlay xattr", [][]tarEntry{{{name: "d", typ: tar.TypeDir, xattrs: map[string]string{"trusted.overlay.redirect": "/etc"}}}}, `xattr "trusted.overlay.redirect": images may not carry trusted.* xattrs`},
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
	requireRoot(t)
	rootfs, err := applyAll(t,
		[]tarEntry{
			{name: "bin", typ: tar.TypeDir},
			{name: "bin/su", body: "setuid", mode: 0o4755},
			{name: "bin/tool", body: "tool", uid: 1234, gid: 5678, xattrs: map[string]string{"user.note": "kept"}},
			{name: "bin/hard", typ: tar.TypeLink, link: "bin/tool", uid: 1234, gid: 5678}, // tar writers repeat the owner
			{name: "etc", typ: tar.TypeDir},
			{name: "etc/keep", body: "keep"},
			{name: "etc/remove", body: "remove"},
			{name: "opq", typ: tar.TypeDir},
			{name: "opq/old", body: "old"},
			{name: "usr", typ: tar.TypeDir},
			{name: "usr/lib", typ: tar.TypeDir},
			{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
			{name: "abs", typ: tar.TypeSymlink, link: "/usr/lib/libx.so"},
			{name: "fifo", typ: tar.TypeFifo},
		},
		[]tarEntry{
			{name: "etc/.wh.remove"},
			{name: "opq/.wh..wh..opq"},
			{name: "opq/new", body: "new"},
			// a relative symlink that stays inside the root may be written through
			{name: "lib/libx.so", body: "lib"},
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
