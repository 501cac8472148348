package squash

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Issue 21, item 4: a user who holds only the bytes of another user's
// manifest gets nothing of that user's cached image.

// archiveOf writes im as an OCI archive (tag v1) in a directory everyone
// may read, after drop (may be nil) has changed its layout: the path.
func archiveOf(t *testing.T, im *testImage, drop func(layout string)) string {
	t.Helper()
	dir := publicDir(t, 0o755)
	layout := filepath.Join(dir, "layout")
	im.writeLayout(t, layout, "v1")
	if drop != nil {
		drop(layout)
	}
	out := filepath.Join(dir, "image.tar")
	tarDir(t, layout, out)
	if err := os.Chmod(out, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func blobPath(layout string, b []byte) string {
	sum := sha256.Sum256(b)
	return filepath.Join(layout, "blobs", "sha256", hex.EncodeToString(sum[:]))
}

// withoutLayers removes im's layer blobs from a layout; with config set,
// its config blob too.
func withoutLayers(im *testImage, config bool) func(string) {
	return func(layout string) {
		for _, l := range im.layers {
			os.Remove(blobPath(layout, l))
		}
		if config {
			os.Remove(blobPath(layout, im.config))
		}
	}
}

// A file holding a manifest's bytes has the manifest's sha256, but files
// and manifests are keyed apart: the file is copied and checked as any
// squashfs (it is none), and the cached image is not handed out.
func TestManifestAsFileIsNotTheImage(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("private/app", "1", im)
	reg.users = map[string]string{"alice": "a-pw"}
	c := openTestCache(t, []string{reg.host}, nil)
	if _, err := c.Get(context.Background(), ref, PullOptions{UID: 1001, AuthJSON: authJSON(reg.host, "alice", "a-pw")}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(publicDir(t, 0o755), "m.sqsh")
	if err := os.WriteFile(file, im.manifest, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := c.Get(context.Background(), file, PullOptions{UID: nobody, GID: nobody})
	if !errors.Is(err, ErrNotSquashfs) {
		t.Fatalf("a file of the manifest's bytes: %v; want ErrNotSquashfs", err)
	}
	assertOneLine(t, err, file, "not a usable squashfs image")
	if imgs := c.List(nobody); len(imgs) != 0 {
		t.Errorf("nobody got %+v", imgs)
	}
}

// The keys of squashfs files never equal a manifest's digest, and name
// files of their own in the cache.
func TestFileKeysAreApart(t *testing.T) {
	sum := sha256.Sum256([]byte("same bytes"))
	manifest := "sha256:" + hex.EncodeToString(sum[:])
	file := fileKey(sum[:])
	if file == manifest || !isFileKey(file) || isFileKey(manifest) {
		t.Fatalf("fileKey = %q, manifest digest %q", file, manifest)
	}
	c := &Cache{images: "/cache/images"}
	if c.imagePath(file) == c.imagePath(manifest) || c.configPath(file) == c.configPath(manifest) {
		t.Errorf("one file for both: %s", c.imagePath(file))
	}
}

// A squashfs file's image is keyed as a file: its Digest says so.
func TestSquashfsFileKey(t *testing.T) {
	c := openTestCache(t, nil, nil)
	src := publicCopy(t, makeSquashfs(t, map[string]string{"etc/os-release": "ID=file\n"}), 0o644)
	img, err := c.Get(context.Background(), src, PullOptions{UID: nobody, GID: nobody})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(src)
	sum := sha256.Sum256(b)
	if img.Digest != fileKey(sum[:]) {
		t.Errorf("Digest %q, want %q", img.Digest, fileKey(sum[:]))
	}
}

// An archive that names a cached image but lacks its layers (or holds
// other bytes under their names) is refused, with the reason; the user's
// own full archive of the same image is taken from the cache without a new
// squash, checked once per user.
func TestArchiveMustHoldTheLayers(t *testing.T) {
	c := openTestCache(t, nil, nil)
	im := newTestImage(t, baseConfig, baseLayers()...)
	full := archiveOf(t, im, nil)
	if _, err := c.Get(context.Background(), "oci-archive:"+full, PullOptions{UID: 1001, GID: 1001}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		drop       func(string)
	}{
		{"manifest only", "lacks the image's layers", withoutLayers(im, true)},
		{"manifest and config", "lacks the image's layers", withoutLayers(im, false)},
		{"other bytes", "does not match its digest", func(layout string) {
			os.WriteFile(blobPath(layout, im.layers[1]), []byte("not the layer"), 0o644)
		}},
		{"no config", "lacks the image's config", func(layout string) { os.Remove(blobPath(layout, im.config)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ref := "oci-archive:" + archiveOf(t, im, tc.drop)
			_, err := c.Get(context.Background(), ref, PullOptions{UID: nobody, GID: nobody})
			if !errors.Is(err, ErrIncompleteImage) {
				t.Fatalf("%v; want ErrIncompleteImage", err)
			}
			assertOneLine(t, err, ref, tc.want)
			if imgs := c.List(nobody); len(imgs) != 0 {
				t.Errorf("nobody got %+v", imgs)
			}
		})
	}
	// The user's own copy of the whole image: served from the cache.
	before, _ := os.Stat(c.imagePath(im.digest.String()))
	start := time.Now()
	img, err := c.Get(context.Background(), "oci-archive:"+full, PullOptions{UID: nobody, GID: nobody})
	if err != nil || img.Digest != im.digest.String() {
		t.Fatalf("nobody's full archive: %v, %v", img, err)
	}
	first := time.Since(start)
	again := fastest(t, 3, func() error {
		_, err := c.Get(context.Background(), "oci-archive:"+full, PullOptions{UID: nobody, GID: nobody})
		return err
	})
	t.Logf("nobody's first Get of the cached image (checks the layers): %v; again: %v", first, again)
	if after, _ := os.Stat(img.Path); !os.SameFile(before, after) {
		t.Error("the cached image was made again")
	}
	c.bg.Wait()
	if ents, _ := os.ReadDir(c.tmp); len(ents) != 0 {
		t.Errorf("tmp holds %s", ents[0].Name())
	}
}

// With a site image store, a node that never had the image does not copy
// it out of the store for an archive without the layers; the whole archive
// still gets it from there.
func TestArchiveMustHoldTheLayersForTheStore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}
	shared := func(o *Options) { o.SharedStore = store }
	im := newTestImage(t, baseConfig, baseLayers()...)
	full := archiveOf(t, im, nil)
	builder := openTestCache(t, nil, shared)
	if _, err := builder.Get(context.Background(), "oci-archive:"+full, PullOptions{UID: 1001, GID: 1001}); err != nil {
		t.Fatal(err)
	}
	if e, err := builder.shared.lookup(im.digest.String()); e == nil {
		t.Fatalf("the builder did not put the image into the store: %v", err)
	}
	c := openTestCache(t, nil, shared)
	ref := "oci-archive:" + archiveOf(t, im, withoutLayers(im, true))
	_, err := c.Get(context.Background(), ref, PullOptions{UID: nobody, GID: nobody})
	if !errors.Is(err, ErrIncompleteImage) {
		t.Fatalf("%v; want ErrIncompleteImage", err)
	}
	assertOneLine(t, err, ref, "lacks the image's layers")
	if imgs := c.List(0); len(imgs) != 0 {
		t.Errorf("copied out of the store: %+v", imgs)
	}
	if _, err := c.Get(context.Background(), "oci-archive:"+full, PullOptions{UID: nobody, GID: nobody}); err != nil {
		t.Fatal(err)
	}
}

// An archive without the layers that joins a pull of its image under way
// (another user's, from a registry) gets nothing from it.
func TestArchiveWithoutLayersJoiningAPull(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("private/app", "1", im)
	reg.blobDelay = time.Second
	c := openTestCache(t, []string{reg.host}, nil)
	pulled := make(chan error, 1)
	go func() {
		_, err := c.Get(context.Background(), ref, PullOptions{UID: 1001})
		pulled <- err
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, n := reg.counts(digestOf(im.layers[0])); n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pull never started")
		}
	}
	archive := "oci-archive:" + archiveOf(t, im, withoutLayers(im, true))
	_, err := c.Get(context.Background(), archive, PullOptions{UID: nobody, GID: nobody})
	if err := <-pulled; err != nil {
		t.Fatal(err)
	}
	if !errors.Is(err, ErrIncompleteImage) {
		t.Fatalf("%v; want ErrIncompleteImage", err)
	}
	if imgs := c.List(nobody); len(imgs) != 0 {
		t.Errorf("nobody got %+v", imgs)
	}
}

// Images cached before file keys had a space of their own are dropped
// when the cache opens: which of them were files, and who was handed them
// for a manifest alone, cannot be told.
func TestOpenDropsImagesKeyedTogether(t *testing.T) {
	c := openTestCache(t, nil, nil)
	d := "sha256:" + strings.Repeat("b", 64)
	fakeEntries(t, c, map[string]int64{d: 10}, nil, nil)
	c.ix.Images[d].Checks = 1
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
		t.Errorf("kept %d images keyed the old way", len(imgs))
	}
}

// A manifest whose layer is foreign (URLs) is refused before anything
// fetches the URL: the user chose it, and the daemon is root.
func TestForeignLayerNotFetched(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	im := newTestImage(t, baseConfig, baseLayers()...)
	var m map[string]any
	if err := json.Unmarshal(im.manifest, &m); err != nil {
		t.Fatal(err)
	}
	m["layers"].([]any)[0].(map[string]any)["urls"] = []string{srv.URL + "/layer"}
	im.manifest, _ = json.Marshal(m)
	im.digest = digest.FromBytes(im.manifest)
	c := openTestCache(t, nil, nil)
	fakeEntries(t, c, map[string]int64{im.digest.String(): 10}, nil, nil) // as if cached
	ref := "oci-archive:" + archiveOf(t, im, withoutLayers(im, false))
	_, err := c.Get(context.Background(), ref, PullOptions{UID: nobody, GID: nobody})
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("%v; want ErrUnsupported", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the layer's URL was fetched %d times", n)
	}
}
