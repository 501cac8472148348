package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// streamAll streams layers (bottom first, gzip-compressed as a registry
// serves them) through tar2sqfs and unpacks the squashfs with unsquashfs:
// the tree the image's users will see.
func streamAll(t *testing.T, layers ...[]imagetest.TarEntry) (string, error) {
	t.Helper()
	dir := t.TempDir()
	blobs := make([]string, len(layers))
	for i, l := range layers {
		blobs[i] = filepath.Join(dir, fmt.Sprintf("blob%d", i))
		if err := os.WriteFile(blobs[i], imagetest.GzipBytes(t, imagetest.LayerTar(t, l...)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var stream bytes.Buffer
	_, err := Stream(context.Background(), len(blobs), func(i int) (string, error) { return blobs[i], nil }, &stream, nil)
	if err != nil {
		return "", err
	}
	sqfs := filepath.Join(dir, "image.sqfs")
	cmd := exec.Command("tar2sqfs", "--quiet", "--no-skip", "--compressor", "zstd", sqfs)
	cmd.Stdin = &stream
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar2sqfs refused the stream: %v: %s", err, out)
	}
	root := filepath.Join(dir, "root")
	if out, err := exec.Command("unsquashfs", "-quiet", "-no-progress", "-d", root, sqfs).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs: %v: %s", err, out)
	}
	return root, nil
}

// describe lists every path under root with what a user of the image can
// see of it: type, mode, owner, size and content, link target, user.* and
// security.* xattrs, which paths share an inode, and a file's mtime.
func describe(t *testing.T, root string) string {
	t.Helper()
	var lines []string
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d", rel, st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			line += fmt.Sprintf(" %x mtime=%d", sha256.Sum256(b), st.Mtim.Sec)
			if first, ok := inodes[st.Ino]; ok {
				line += " same-as=" + first
			} else {
				inodes[st.Ino] = rel
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		}
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil {
			names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			for _, x := range names {
				if strings.HasPrefix(x, "user.") || strings.HasPrefix(x, "security.") {
					v := make([]byte, 256)
					m, _ := unix.Lgetxattr(p, x, v)
					line += fmt.Sprintf(" %s=%q", x, v[:max(m, 0)])
				}
			}
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

func requireStreamTools(t *testing.T) {
	t.Helper()
	imagetest.RequireRoot(t)
	imagetest.RequireBinary(t, "tar2sqfs")
	imagetest.RequireBinary(t, "unsquashfs")
}

// TestStreamMatchesExtraction: for each set of layers, the image the
// stream makes is the image extraction makes, or the stream says the
// layers need extraction. Never a different image.
func TestStreamMatchesExtraction(t *testing.T) {
	requireStreamTools(t)
	cases := []struct {
		name   string
		layers [][]imagetest.TarEntry
		needs  bool // the stream must hand these to extraction
	}{
		{"one layer", [][]imagetest.TarEntry{{
			{Name: "./", Type: tar.TypeDir, Mode: 0o750, UID: 3},
			{Name: "usr/", Type: tar.TypeDir, Mode: 0o711, UID: 5, GID: 6},
			{Name: "usr/bin/", Type: tar.TypeDir},
			{Name: "usr/bin/ping", Body: "ping", Mode: 0o4755, Xattrs: map[string]string{"security.capability": capNetRaw, "user.note": "x"}},
			{Name: "usr/bin/ping2", Type: tar.TypeLink, Link: "usr/bin/ping", Mode: 0o4755, Xattrs: map[string]string{"security.capability": capNetRaw, "user.note": "x"}},
			{Name: "usr/lib", Type: tar.TypeSymlink, Link: "../lib"},
			{Name: "fifo", Type: tar.TypeFifo},
		}}, false},
		{"an upper layer replaces, deletes and hides", [][]imagetest.TarEntry{
			{{Name: "a/", Type: tar.TypeDir}, {Name: "a/old", Body: "old"}, {Name: "a/keep", Body: "keep"},
				{Name: "b/", Type: tar.TypeDir}, {Name: "b/x", Body: "x"}, {Name: "c/", Type: tar.TypeDir}, {Name: "c/y", Body: "y"},
				{Name: "d", Body: "file"}, {Name: "e/", Type: tar.TypeDir, Mode: 0o700}, {Name: "e/z", Body: "z"}},
			{{Name: "a/.wh.old"}, {Name: "a/new", Body: "new"}, {Name: "b/", Type: tar.TypeDir},
				{Name: "b/.wh..wh..opq"}, {Name: "b/fresh", Body: "fresh"}, {Name: ".wh.c"},
				{Name: "d/", Type: tar.TypeDir}, {Name: "d/inside", Body: "i"}, {Name: "e/", Type: tar.TypeDir, Mode: 0o755, UID: 9}},
			{{Name: "e", Body: "now a file"}, {Name: "a/keep", Body: "kept, rewritten"}},
		}, false},
		{"a link to a file of a lower layer", [][]imagetest.TarEntry{
			{{Name: "f", Body: "f"}},
			{{Name: "g", Type: tar.TypeLink, Link: "f"}, {Name: "h", Type: tar.TypeLink, Link: "/g"}},
		}, false},
		{"names of any bytes", [][]imagetest.TarEntry{{
			{Name: "caf\xe9", Body: "latin-1"}, {Name: "new\nline/", Type: tar.TypeDir},
			{Name: "new\nline/" + strings.Repeat("long", 60), Body: "long"},
			{Name: "sym", Type: tar.TypeSymlink, Link: "/abs/\xff/../target"},
		}}, false},
		{"implicit parents", [][]imagetest.TarEntry{
			{{Name: "x/y/z", Body: "deep"}},
			{{Name: "x/y/w", Body: "w"}},
		}, false},
		{"a write through a lower symlink", [][]imagetest.TarEntry{
			{{Name: "real/", Type: tar.TypeDir}, {Name: "lib", Type: tar.TypeSymlink, Link: "real"}},
			{{Name: "lib/x.so", Body: "so"}},
		}, true},
		{"a write through its own layer's symlink", [][]imagetest.TarEntry{
			{{Name: "real/", Type: tar.TypeDir}, {Name: "lib", Type: tar.TypeSymlink, Link: "real"}, {Name: "lib/x.so", Body: "so"}},
		}, true},
		{"a link to a file a later layer replaced", [][]imagetest.TarEntry{
			{{Name: "f", Body: "old"}},
			{{Name: "g", Type: tar.TypeLink, Link: "f"}},
			{{Name: "f", Body: "new"}},
		}, true},
		{"a name longer than a file system takes", [][]imagetest.TarEntry{
			{{Name: "d/" + strings.Repeat("x", 256), Body: "x"}},
		}, true},
		{"a path twice in one layer", [][]imagetest.TarEntry{
			{{Name: "f", Body: "first"}, {Name: "f", Body: "second"}},
		}, true},
		{"a whiteout beside what it deletes", [][]imagetest.TarEntry{
			{{Name: "f", Body: "lower"}},
			{{Name: "f", Body: "upper"}, {Name: ".wh.f"}},
		}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want, werr := applyAll(t, c.layers...)
			got, gerr := streamAll(t, c.layers...)
			switch {
			case c.needs:
				if !errors.Is(gerr, ErrNeedsExtraction) {
					t.Fatalf("stream: %v, want ErrNeedsExtraction", gerr)
				}
			case werr != nil || gerr != nil:
				t.Fatalf("extraction: %v; stream: %v", werr, gerr)
			default:
				if w, g := describe(t, want), describe(t, got); w != g {
					t.Errorf("the stream's image differs from extraction's:\nextraction:\n%s\nstream:\n%s", w, g)
				}
			}
		})
	}
}

// TestStreamRandomLayers: random layers of files, directories, symlinks,
// hard links, whiteouts and opaque directories over a few names. The
// stream's image is extraction's, or the stream hands them to extraction;
// where extraction fails, the stream does not make an image.
func TestStreamRandomLayers(t *testing.T) {
	requireStreamTools(t)
	names := []string{"a", "b", "a/c", "a/d", "b/c", "a/c/e", "b/c/e"}
	n := 150
	if testing.Short() {
		n = 30
	}
	matched, handed := 0, 0
	for seed := range n {
		r := rand.New(rand.NewPCG(uint64(seed), 7))
		var layers [][]imagetest.TarEntry
		var files []string
		for range 1 + r.IntN(4) {
			var l []imagetest.TarEntry
			seen := map[string]bool{}
			for range 1 + r.IntN(6) {
				p := names[r.IntN(len(names))]
				if seen[p] {
					continue
				}
				seen[p] = true
				e := imagetest.TarEntry{Name: p, UID: r.IntN(3), Mode: []int64{0o644, 0o600, 0o4755}[r.IntN(3)]}
				switch r.IntN(8) {
				case 0, 1:
					e.Type, e.Mode, e.Name = tar.TypeDir, []int64{0o755, 0o700}[r.IntN(2)], p+"/"
				case 2:
					e.Type, e.Link, e.Mode = tar.TypeSymlink, []string{"b", "../b", "nowhere"}[r.IntN(3)], 0o777
				case 3:
					if len(files) == 0 {
						continue
					}
					e.Type, e.Link = tar.TypeLink, files[r.IntN(len(files))]
				case 4:
					e.Name = filepath.Join(filepath.Dir(p), ".wh."+filepath.Base(p))
				case 5:
					e.Name = p + "/.wh..wh..opq"
				default:
					e.Body = fmt.Sprintf("%s of seed %d", p, seed)
					files = append(files, p)
				}
				l = append(l, e)
			}
			layers = append(layers, l)
		}
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			want, werr := applyAll(t, layers...)
			got, gerr := streamAll(t, layers...)
			switch {
			case errors.Is(gerr, ErrNeedsExtraction):
				if werr == nil {
					handed++
				}
			case werr != nil:
				// Extraction fails on what a layer above hides (a
				// write below a lower file, say); the stream, as
				// overlayfs, sees only the final tree.
			case gerr != nil:
				t.Fatalf("the stream failed (%v) where extraction did not", gerr)
			default:
				matched++
				if w, g := describe(t, want), describe(t, got); w != g {
					t.Errorf("layers %+v:\nextraction:\n%s\nstream:\n%s", layers, w, g)
				}
			}
		})
	}
	// The stream must make most images itself, or it would be slower
	// than extraction, not faster; these layers are harder than real
	// ones, which builders write parents first and each path once.
	t.Logf("of %d images extraction made, the stream made %d and handed %d back", matched+handed, matched, handed)
	if matched < handed {
		t.Errorf("the stream made only %d images and handed %d to extraction", matched, handed)
	}
}

// capNetRaw is a security.capability value: cap_net_raw=ep.
const capNetRaw = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"

// TestStreamRefusesUnsafeEntries: what Apply refuses the stream refuses,
// masked by a layer above or not.
func TestStreamRefusesUnsafeEntries(t *testing.T) {
	for _, c := range []struct {
		name  string
		entry imagetest.TarEntry
	}{
		{"device", imagetest.TarEntry{Name: "dev/sda", Type: tar.TypeBlock, Major: 8}},
		{"dotdot", imagetest.TarEntry{Name: "../x", Body: "x"}},
		{"link out", imagetest.TarEntry{Name: "l", Type: tar.TypeLink, Link: "../../etc/shadow"}},
		{"trusted xattr", imagetest.TarEntry{Name: "f", Body: "x", Xattrs: map[string]string{"trusted.overlay.redirect": "/x"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			lower, upper := filepath.Join(dir, "0"), filepath.Join(dir, "1")
			_ = os.WriteFile(lower, imagetest.LayerTar(t, c.entry), 0o600)
			_ = os.WriteFile(upper, imagetest.LayerTar(t, imagetest.TarEntry{Name: ".wh..wh..opq"}), 0o600)
			blobs := []string{lower, upper}
			_, err := Stream(context.Background(), 2, func(i int) (string, error) { return blobs[i], nil }, &bytes.Buffer{}, nil)
			if !errors.Is(err, image.ErrUnsafeLayer) {
				t.Fatalf("got %v, want ErrUnsafeLayer", err)
			}
		})
	}
}

// TestStreamBudget: the stream stops once the image's budget is used up.
func TestStreamBudget(t *testing.T) {
	blob := filepath.Join(t.TempDir(), "blob")
	_ = os.WriteFile(blob, imagetest.LayerTar(t, imagetest.TarEntry{Name: "big", Body: strings.Repeat("x", 1<<20)}), 0o600)
	_, err := Stream(context.Background(), 1, func(int) (string, error) { return blob, nil }, &bytes.Buffer{}, &image.Budget{Limit: 64 << 10})
	if !errors.Is(err, image.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
}

// TestStreamWideDirectory: a directory of more than maxDirEntries entries
// (files, or directories made for deeper paths) goes to extraction.
func TestStreamWideDirectory(t *testing.T) {
	for _, c := range []struct {
		name  string
		entry func(i int) imagetest.TarEntry
	}{
		{"files", func(i int) imagetest.TarEntry { return imagetest.TarEntry{Name: fmt.Sprintf("d/f%d", i)} }},
		{"parents", func(i int) imagetest.TarEntry { return imagetest.TarEntry{Name: fmt.Sprintf("d%d/f", i)} }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var entries []imagetest.TarEntry
			for i := range maxDirEntries + 1 {
				entries = append(entries, c.entry(i))
			}
			blob := filepath.Join(t.TempDir(), "blob")
			_ = os.WriteFile(blob, imagetest.LayerTar(t, entries...), 0o600)
			_, err := Stream(context.Background(), 1, func(int) (string, error) { return blob, nil }, io.Discard, nil)
			if !errors.Is(err, ErrNeedsExtraction) || !strings.Contains(err.Error(), "more than 16384 entries") {
				t.Fatalf("got %v, want ErrNeedsExtraction for the wide directory", err)
			}
			entries = entries[:maxDirEntries]
			_ = os.WriteFile(blob, imagetest.LayerTar(t, entries...), 0o600)
			if _, err := Stream(context.Background(), 1, func(int) (string, error) { return blob, nil }, io.Discard, nil); err != nil {
				t.Fatalf("%d entries: %v", maxDirEntries, err)
			}
		})
	}
}

// TestPathsTrackedAreBounded: an image naming more paths than a pull keeps
// track of is refused, by the stream and by extraction's scanner.
func TestPathsTrackedAreBounded(t *testing.T) {
	defer func(old int64) { maxTracked = old }(maxTracked)
	maxTracked = 100 * (trackCost + 8)
	var entries []imagetest.TarEntry
	for i := range 200 {
		entries = append(entries, imagetest.TarEntry{Name: fmt.Sprintf("d%d/f%d", i%10, i)})
	}
	blob := filepath.Join(t.TempDir(), "blob")
	_ = os.WriteFile(blob, imagetest.LayerTar(t, entries...), 0o600)
	_, err := Stream(context.Background(), 1, func(int) (string, error) { return blob, nil }, io.Discard, nil)
	if !errors.Is(err, image.ErrTooLarge) || !strings.Contains(err.Error(), "more paths than a pull keeps track of") {
		t.Errorf("stream: got %v, want ErrTooLarge", err)
	}
	err = scanLayer(newScanner(t.TempDir()), bytes.NewReader(imagetest.LayerTar(t, entries...)), io.Discard)
	if !errors.Is(err, image.ErrTooLarge) {
		t.Errorf("scanner: got %v, want ErrTooLarge", err)
	}
}

// TestDeepPaths: a path longer than Linux takes is refused by the stream
// and the scanner alike; the stream takes the deepest chain Linux takes
// (2,047 directories) in time linear in each path; the scanner, which
// looks paths up whole, stops at its work bound.
func TestDeepPaths(t *testing.T) {
	deep := func(n int) []imagetest.TarEntry {
		var e []imagetest.TarEntry
		p := "a"
		for range n {
			e = append(e, imagetest.TarEntry{Name: p + "/", Type: tar.TypeDir})
			p += "/a"
		}
		return append(e, imagetest.TarEntry{Name: p, Body: "deep"})
	}
	check := func(entries []imagetest.TarEntry) (stream, scan error) {
		b := imagetest.LayerTar(t, entries...)
		blob := filepath.Join(t.TempDir(), "blob")
		_ = os.WriteFile(blob, b, 0o600)
		_, stream = Stream(context.Background(), 1, func(int) (string, error) { return blob, nil }, io.Discard, nil)
		return stream, scanLayer(newScanner(t.TempDir()), bytes.NewReader(b), io.Discard)
	}
	if stream, _ := check(deep(2047)); stream != nil {
		t.Errorf("2047 deep: stream %v", stream)
	}
	if stream, scan := check(deep(300)); stream != nil || scan != nil {
		t.Errorf("300 deep: stream %v, scan %v", stream, scan)
	}
	long := []imagetest.TarEntry{{Name: strings.Repeat("d/", 2048) + "f", Body: "x"}}
	if stream, scan := check(long); !errors.Is(stream, image.ErrUnsafeLayer) || !errors.Is(scan, image.ErrUnsafeLayer) {
		t.Errorf("a 4097-byte path: stream %v, scan %v; want both refused", stream, scan)
	}
	defer func(old int64) { maxScanWork = old }(maxScanWork)
	maxScanWork = 1 << 20
	if _, scan := check(deep(300)); !errors.Is(scan, image.ErrTooLarge) {
		t.Errorf("scan past its work bound: %v, want ErrTooLarge", scan)
	}
}
