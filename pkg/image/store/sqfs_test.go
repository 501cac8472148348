package store

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
	"github.com/podman-hpc/podman-hpc/pkg/image/squashfs"
)

// sqfsEntry is one file of a test squashfs: its mode and xattrs.
type sqfsEntry struct {
	mode   os.FileMode
	xattrs map[string]string
}

// makeSquashfsWith builds a squashfs from files (path: entry), with
// mksquashfs's extra arguments (-comp, -p pseudo definitions).
func makeSquashfsWith(t *testing.T, files map[string]sqfsEntry, extra ...string) string {
	t.Helper()
	imagetest.RequireRoot(t)
	imagetest.RequireBinary(t, "mksquashfs")
	src := t.TempDir()
	for p, e := range files {
		full := filepath.Join(src, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
		if e.mode != 0 {
			if err := os.Chmod(full, e.mode); err != nil {
				t.Fatal(err)
			}
		}
		for k, v := range e.xattrs {
			if err := unix.Lsetxattr(full, k, []byte(v), 0); err != nil {
				t.Skipf("cannot set xattr %s here: %v", k, err)
			}
		}
	}
	out := filepath.Join(t.TempDir(), "image.sqsh")
	args := append([]string{src, out, "-noappend", "-quiet", "-no-progress"}, extra...)
	if o, err := imagetest.RunCmd("mksquashfs", args...); err != nil {
		t.Fatalf("mksquashfs: %v: %s", err, o)
	}
	return out
}

// A squashfs file with a device node or a trusted.* xattr is refused
// before anything mounts it, whatever its compression; user.* and
// security.* xattrs, setuid and setgid files (inert on the nosuid mount,
// as in registry images) and ordinary files pass.
func TestSquashfsFileContent(t *testing.T) {
	c := openTestCache(t, nil, nil)
	many := map[string]sqfsEntry{}
	for i := range 600 { // > 8 KiB of key/values and of ids: several blocks
		many[fmt.Sprintf("d/f%03d", i)] = sqfsEntry{xattrs: map[string]string{"user.n": strings.Repeat(fmt.Sprint(i), 40)}}
	}
	withTrusted := map[string]sqfsEntry{}
	for k, v := range many {
		withTrusted[k] = v
	}
	withTrusted["d/f599"] = sqfsEntry{xattrs: map[string]string{"user.n": "x", "trusted.overlay.redirect": "/etc"}}
	cases := []struct {
		name  string
		files map[string]sqfsEntry
		extra []string
		want  string // "" accepted
	}{
		{name: "plain", files: map[string]sqfsEntry{"etc/os-release": {}}},
		{name: "user xattrs", files: many},
		{name: "setgid directory", files: map[string]sqfsEntry{"a": {}}, extra: []string{"-p", "shared d 2775 0 0"}},
		{name: "device", files: map[string]sqfsEntry{"a": {}}, extra: []string{"-p", "dev d 755 0 0", "-p", "dev/sda b 660 0 0 8 0"}, want: "/dev/sda is a device node"},
		{name: "char device", files: map[string]sqfsEntry{"a": {}}, extra: []string{"-p", "mem c 666 0 0 1 1"}, want: "/mem is a device node"},
		{name: "setuid", files: map[string]sqfsEntry{"bin/su": {mode: os.ModeSetuid | 0o755}}},
		{name: "setgid", files: map[string]sqfsEntry{"bin/wall": {mode: os.ModeSetgid | 0o755}}},
		{name: "trusted xattr", files: map[string]sqfsEntry{"d": {xattrs: map[string]string{"trusted.overlay.opaque": "y"}}}, want: `"trusted.overlay.opaque"`},
		{name: "trusted among many", files: withTrusted, want: `"trusted.overlay.redirect"`},
		{name: "file capability", files: map[string]sqfsEntry{"ping": {xattrs: map[string]string{"security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"}}}},
	}
	for _, comp := range []string{"gzip", "xz", "lz4", "zstd"} {
		for _, tc := range cases {
			t.Run(comp+"/"+tc.name, func(t *testing.T) {
				src := publicCopy(t, makeSquashfsWith(t, tc.files, append([]string{"-comp", comp}, tc.extra...)...), 0o644)
				_, err := c.Get(context.Background(), src, PullOptions{UID: nobody, GID: nobody})
				if tc.want == "" {
					if err != nil {
						t.Fatalf("refused: %v", err)
					}
					return
				}
				if !errors.Is(err, image.ErrUnsafeFile) {
					t.Fatalf("err = %v, want image.ErrUnsafeFile", err)
				}
				assertOneLine(t, err, src, "unsafe squashfs file", tc.want, "the file is refused")
			})
		}
	}
	// lzo: modes are checked; xattrs cannot be, and are refused.
	src := publicCopy(t, makeSquashfsWith(t, map[string]sqfsEntry{"a": {}}, "-comp", "lzo", "-no-xattrs", "-p", "mem c 666 0 0 1 1"), 0o644)
	if _, err := c.Get(context.Background(), src, PullOptions{UID: nobody, GID: nobody}); !errors.Is(err, image.ErrUnsafeFile) {
		t.Errorf("lzo device node: %v", err)
	}
	src = publicCopy(t, makeSquashfsWith(t, map[string]sqfsEntry{"a": {xattrs: map[string]string{"user.a": "b"}}}, "-comp", "lzo"), 0o644)
	if _, err := c.Get(context.Background(), src, PullOptions{UID: nobody, GID: nobody}); !errors.Is(err, image.ErrUnsafeFile) || !strings.Contains(err.Error(), "-no-xattrs") {
		t.Errorf("lzo with xattrs: %v", err)
	}
	src = publicCopy(t, makeSquashfsWith(t, map[string]sqfsEntry{"a": {}}, "-comp", "lzo", "-no-xattrs"), 0o644)
	if _, err := c.Get(context.Background(), src, PullOptions{UID: nobody, GID: nobody}); err != nil {
		t.Errorf("lzo without xattrs: %v", err)
	}
	// Nothing refused was kept.
	c.wait()
	for _, img := range c.List(0) {
		if err := squashfs.Check(context.Background(), c.unsquashfs, img.Path); err != nil {
			t.Errorf("cached %s: %v", img.Digest, err)
		}
	}
	if ents, _ := filepath.Glob(filepath.Join(c.images, ".new-*")); len(ents) != 0 {
		t.Errorf("copies left: %v", ents)
	}
}

// Registry and archive layers: trusted.* xattrs are refused; setuid bits
// and security.* xattrs are kept, as in the registry's image (the image is
// mounted nosuid: TestSetuidGainsNothing in test/e2e).
func TestLayersRefuseTrustedXattrs(t *testing.T) {
	reg := newFakeRegistry(t)
	ref := reg.add("test/priv", "1", newTestImage(t, ImageConfig{}, []imagetest.TarEntry{
		{Name: "bin/", Type: '5'},
		{Name: "bin/su", Body: "su", Mode: 0o4755},
		{Name: "bin/ping", Body: "ping", Mode: 0o755, Xattrs: map[string]string{"user.keep": "1"}},
	}))
	bad := reg.add("test/trusted", "1", newTestImage(t, ImageConfig{}, []imagetest.TarEntry{
		{Name: "f", Body: "x", Xattrs: map[string]string{"trusted.foo": "1"}},
	}))
	c := openTestCache(t, []string{reg.host}, nil)
	img, err := c.Get(context.Background(), ref, PullOptions{UID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if l := lineFor(listing(t, img.Path), "/bin/su"); !strings.HasPrefix(l, "-rwsr-xr-x") {
		t.Errorf("/bin/su: %q, want setuid kept", l)
	}
	_, err = c.Get(context.Background(), bad, PullOptions{UID: 1000})
	if !errors.Is(err, image.ErrUnsafeLayer) {
		t.Fatalf("trusted xattr: %v, want image.ErrUnsafeLayer", err)
	}
	assertOneLine(t, err, bad, "unsafe layer", `"trusted.foo"`, "images may not carry trusted.* xattrs")
}

// Images cached by a daemon that did not check content as it does now are
// dropped when the cache opens.
func TestOpenDropsUncheckedImages(t *testing.T) {
	c := openTestCache(t, nil, nil)
	d := "sha256:" + strings.Repeat("a", 64)
	fakeEntries(t, c, map[string]int64{d: 10}, nil, nil)
	c.ix.Images[d].Checks = 0
	if err := c.ix.save(c.dir); err != nil {
		t.Fatal(err)
	}
	c.Close()
	c2, err := Open(context.Background(), c.o)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if imgs := c2.List(0); len(imgs) != 0 {
		t.Errorf("kept %d unchecked images", len(imgs))
	}
	if _, err := os.Stat(c2.imagePath(d)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("its file is still there: %v", err)
	}
}

// A pull streams its layers into tar2sqfs; layers the stream cannot
// reproduce exactly (here a write through a lower layer's symlink) are
// applied by extraction instead, with the same image as a result.
func TestPullStreamsOrExtracts(t *testing.T) {
	imagetest.RequireBinary(t, "tar2sqfs")
	reg := newFakeRegistry(t)
	plain := reg.add("test/plain", "1", newTestImage(t, ImageConfig{}, baseLayers()...))
	through := reg.add("test/through", "1", newTestImage(t, ImageConfig{},
		[]imagetest.TarEntry{{Name: "real/", Type: tar.TypeDir}, {Name: "lib", Type: tar.TypeSymlink, Link: "real"}},
		[]imagetest.TarEntry{{Name: "lib/x.so", Body: "so"}}))
	var log bytes.Buffer
	c := openTestCache(t, []string{reg.host}, func(o *Options) { o.Log = slog.New(slog.NewTextHandler(&log, nil)) })
	if _, err := c.Get(context.Background(), plain, PullOptions{UID: 1000}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "squasher=tar2sqfs") {
		t.Errorf("the plain image was not streamed:\n%s", log.String())
	}
	log.Reset()
	img, err := c.Get(context.Background(), through, PullOptions{UID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "layers applied by extraction") || !strings.Contains(log.String(), "squasher=mksquashfs") {
		t.Errorf("the image written through a symlink was not extracted:\n%s", log.String())
	}
	l := listing(t, img.Path)
	if !strings.HasPrefix(lineFor(l, "/lib"), "lrwx") || !strings.HasPrefix(lineFor(l, "/real/x.so"), "-rw") {
		t.Errorf("x.so is not where an extractor puts it:\n%s", l)
	}
}
