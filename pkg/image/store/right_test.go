package store

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
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
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
	if !errors.Is(err, image.ErrNotSquashfs) {
		t.Fatalf("a file of the manifest's bytes: %v; want image.ErrNotSquashfs", err)
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
	src := publicCopy(t, imagetest.MakeSquashfs(t, map[string]string{"etc/os-release": "ID=file\n"}), 0o644)
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
			if !errors.Is(err, image.ErrIncompleteImage) {
				t.Fatalf("%v; want image.ErrIncompleteImage", err)
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
	c.wait()
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
	if !errors.Is(err, image.ErrIncompleteImage) {
		t.Fatalf("%v; want image.ErrIncompleteImage", err)
	}
	assertOneLine(t, err, ref, "lacks the image's layers")
	if imgs := c.List(0); len(imgs) != 0 {
		t.Errorf("copied out of the store: %+v", imgs)
	}
	if _, err := c.Get(context.Background(), "oci-archive:"+full, PullOptions{UID: nobody, GID: nobody}); err != nil {
		t.Fatal(err)
	}
}

// An archive without the layers, while another user's pull of its image
// is under way (from a registry), gets nothing from it: it does not join
// that pull (a pull is its user's own), and its own finds its layers
// missing.
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
	if !errors.Is(err, image.ErrIncompleteImage) {
		t.Fatalf("%v; want image.ErrIncompleteImage", err)
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
	if !errors.Is(err, image.ErrUnsupported) {
		t.Errorf("%v; want image.ErrUnsupported", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the layer's URL was fetched %d times", n)
	}
}

// A registry's word is taken for a cached image only from a repository
// the image is known by: one serving another user's manifest alone, on
// the same registry or one of the user's own, by tag or by digest, is
// refused with the reason and the fix; nothing is handed out.
func TestRegistryManifestAloneIsNotTheImage(t *testing.T) {
	reg := newFakeRegistry(t)
	own := newFakeRegistry(t) // a registry the user runs themselves
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("private/app", "1", im)
	c := openTestCache(t, []string{reg.host, own.host}, nil)
	if _, err := c.Get(context.Background(), ref, PullOptions{UID: 1001}); err != nil {
		t.Fatal(err)
	}
	sameRegistry := reg.addManifestOnly("mine/x", "t", im)
	ownRegistry := own.addManifestOnly("x", "t", im)
	for _, ref := range []string{sameRegistry, ownRegistry,
		strings.TrimSuffix(sameRegistry, ":t") + "@" + im.digest.String()} {
		t.Run(ref, func(t *testing.T) {
			_, err := c.Get(context.Background(), ref, PullOptions{UID: nobody, GID: nobody})
			if !errors.Is(err, image.ErrIncompleteImage) {
				t.Fatalf("%v; want image.ErrIncompleteImage", err)
			}
			repo, _, _ := strings.Cut(strings.TrimSuffix(ref, ":t"), "@")
			assertOneLine(t, err, ref, "repository "+repo+" lacks the image's layers", "pull it from the repository it was pushed to")
			if imgs := c.List(nobody); len(imgs) != 0 {
				t.Errorf("nobody got %+v", imgs)
			}
		})
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if got := c.ix.Images[im.digest.String()].Sources; !slices.Equal(got, []string{reg.host + "/private/app"}) {
		t.Errorf("known by %q, want the repository it was pulled from only", got)
	}
}

// The honest paths stay cheap: another user pulling the image from the
// repository it came from (by tag, or by digest) fetches no blob; so does
// one whose repository showed the blobs once. A repository holding the
// whole image shows it by its blobs (read once, the image not made
// again), and is known by it from then on.
func TestRegistryKnownSourceFetchesNoBlob(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("private/app", "1", im)
	c := openTestCache(t, []string{reg.host}, nil)
	if _, err := c.Get(context.Background(), ref, PullOptions{UID: 1001}); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(c.imagePath(im.digest.String()))
	pulled := reg.repoGets("private/app")
	for uid, ref := range map[uint32]string{1002: ref, 1003: reg.host + "/private/app@" + im.digest.String()} {
		if img, err := c.Get(context.Background(), ref, PullOptions{UID: uid}); err != nil || img.Digest != im.digest.String() {
			t.Fatalf("uid %d, %s: %v, %v", uid, ref, img, err)
		}
	}
	if n := reg.repoGets("private/app") - pulled; n != 0 {
		t.Errorf("%d blob GETs for users of the repository the image came from", n)
	}

	// The whole image in another repository: its blobs are read, once.
	whole := reg.add("mirror/app", "2", im)
	start := time.Now()
	img, err := c.Get(context.Background(), whole, PullOptions{UID: 1004})
	if err != nil || img.Digest != im.digest.String() {
		t.Fatalf("the whole image from another repository: %v, %v", img, err)
	}
	took := time.Since(start)
	if n, want := reg.repoGets("mirror/app"), len(im.layers)+1; n != want {
		t.Errorf("the other repository's blobs were read %d times, want %d (each once)", n, want)
	}
	if after, _ := os.Stat(img.Path); !os.SameFile(before, after) {
		t.Error("the cached image was made again")
	}
	// Known by it now: the next user of that repository fetches nothing.
	again := fastest(t, 3, func() error {
		_, err := c.Get(context.Background(), whole, PullOptions{UID: 1005})
		return err
	})
	t.Logf("first Get from another repository (reads the blobs): %v; from a known one: %v", took, again)
	if n, want := reg.repoGets("mirror/app"), len(im.layers)+1; n != want {
		t.Errorf("%d blob GETs from a repository the image is known by", n-want)
	}
	c.mu.Lock()
	got := slices.Clone(c.ix.Images[im.digest.String()].Sources)
	c.mu.Unlock()
	if want := []string{reg.host + "/mirror/app", reg.host + "/private/app"}; !slices.Equal(got, want) {
		t.Errorf("known by %q, want %q", got, want)
	}
	// Kept across a restart.
	c.Close()
	c2, err := Open(context.Background(), c.o)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := c2.ix.Images[im.digest.String()].Sources; len(got) != 2 {
		t.Errorf("after a restart known by %q", got)
	}
}

// An entry of an older daemon records no sources: it is known by none,
// and a registry user not among its users shows the blobs once (the
// repository is then known); its users are not asked.
func TestRegistryEntryWithoutSources(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("private/app", "1", im)
	c := openTestCache(t, []string{reg.host}, nil)
	if _, err := c.Get(context.Background(), ref, PullOptions{UID: 1001}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.ix.Images[im.digest.String()].Sources = nil
	if err := c.ix.save(c.dir); err != nil {
		t.Fatal(err)
	}
	c.mu.Unlock()
	b, _ := os.ReadFile(filepath.Join(c.dir, indexName))
	if strings.Contains(string(b), `"sources"`) {
		t.Fatalf("an entry without sources is written with them:\n%s", b)
	}
	pulled := reg.repoGets("private/app")
	if _, err := c.Get(context.Background(), ref, PullOptions{UID: 1001}); err != nil {
		t.Fatal(err)
	}
	if n := reg.repoGets("private/app") - pulled; n != 0 {
		t.Errorf("one of the image's users fetched %d blobs", n)
	}
	if _, err := c.Get(context.Background(), ref, PullOptions{UID: 1002}); err != nil {
		t.Fatal(err)
	}
	if n := reg.repoGets("private/app") - pulled; n != len(im.layers)+1 {
		t.Errorf("a new user fetched %d blobs, want %d", n, len(im.layers)+1)
	}
	_, err := c.Get(context.Background(), reg.addManifestOnly("mine/x", "t", im), PullOptions{UID: nobody})
	if !errors.Is(err, image.ErrIncompleteImage) {
		t.Errorf("the manifest alone: %v; want image.ErrIncompleteImage", err)
	}
}

// With a site image store, on a node that never had the image: a
// repository serving the manifest alone copies nothing out of the store;
// the repository the image came from gets it copied without a blob
// fetched; another repository's blobs are read once, and the store's
// entry records it for every node.
func TestRegistryManifestAloneForTheStore(t *testing.T) {
	store := filepath.Join(t.TempDir(), "store")
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}
	shared := func(o *Options) { o.SharedStore = store }
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("private/app", "1", im)
	builder := openTestCache(t, []string{reg.host}, shared)
	if _, err := builder.Get(context.Background(), ref, PullOptions{UID: 1001}); err != nil {
		t.Fatal(err)
	}
	d := im.digest.String()
	if e, _ := builder.shared.lookup(d); e == nil || !slices.Equal(e.Sources, []string{reg.host + "/private/app"}) {
		t.Fatalf("the store's entry: %+v", e)
	}
	c := openTestCache(t, []string{reg.host}, shared)
	mine := reg.addManifestOnly("mine/x", "t", im)
	_, err := c.Get(context.Background(), mine, PullOptions{UID: nobody, GID: nobody})
	if !errors.Is(err, image.ErrIncompleteImage) {
		t.Fatalf("%v; want image.ErrIncompleteImage", err)
	}
	assertOneLine(t, err, mine, "lacks the image's layers")
	if imgs := c.List(0); len(imgs) != 0 {
		t.Errorf("copied out of the store: %+v", imgs)
	}
	pulled := reg.repoGets("private/app")
	if _, err := c.Get(context.Background(), ref, PullOptions{UID: 1002}); err != nil {
		t.Fatal(err)
	}
	if n := reg.repoGets("private/app") - pulled; n != 0 {
		t.Errorf("%d blob GETs to copy the image out of the store for its own repository", n)
	}
	if got := c.List(0); len(got) != 1 || !slices.Equal(c.ix.Images[d].Sources, []string{reg.host + "/private/app"}) {
		t.Errorf("not copied, or not known by its repository: %+v", got)
	}

	// Another node, another repository holding the whole image.
	other := openTestCache(t, []string{reg.host}, shared)
	whole := reg.add("mirror/app", "2", im)
	if _, err := other.Get(context.Background(), whole, PullOptions{UID: 1003}); err != nil {
		t.Fatal(err)
	}
	if n := reg.repoGets("mirror/app"); n != len(im.layers)+1 {
		t.Errorf("the other repository's blobs were read %d times, want %d", n, len(im.layers)+1)
	}
	if e, _ := other.shared.lookup(d); e == nil || len(e.Sources) != 2 {
		t.Errorf("the store's entry does not record the repository that showed the blobs: %+v", e)
	}
}
