package store

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// Pin (the helper, no cache) and PinFor (the daemon) give a tag's digest
// as NAME:TAG@DIGEST; a digest reference and a path come back as they
// are (nothing to pin); a missing tag is one line naming it. Get of the
// pinned form runs that digest and lists the tag among the user's names.
func TestPinTag(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("test/pin", "1", im)
	c := openTestCache(t, []string{reg.host}, nil)
	ctx := context.Background()
	want := ref + "@" + im.digest.String()
	got, err := source.Pin(ctx, ref, source.PinOptions{RegistriesConf: c.o.RegistriesConf, RegistriesConfDir: c.o.RegistriesConfDir})
	if err != nil || got != want {
		t.Fatalf("Pin = %q, %v; want %q", got, err, want)
	}
	if got, err := c.PinFor(ctx, ref, PullOptions{UID: 1000}); err != nil || got != want {
		t.Fatalf("PinFor = %q, %v; want %q", got, err, want)
	}
	byDigest := reg.host + "/test/pin@" + im.digest.String()
	if got, err := source.Pin(ctx, byDigest, source.PinOptions{RegistriesConf: c.o.RegistriesConf}); err != nil || got != byDigest {
		t.Errorf("Pin(digest) = %q, %v", got, err)
	}
	if got, err := source.Pin(ctx, "/some/image.sqsh", source.PinOptions{}); err != nil || got != "" {
		t.Errorf("Pin(path) = %q, %v", got, err)
	}
	if _, err := source.Pin(ctx, reg.host+"/test/pin:nope", source.PinOptions{RegistriesConf: c.o.RegistriesConf}); err == nil ||
		!strings.Contains(err.Error(), "test/pin:nope") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Pin(missing) = %v", err)
	}
	img, err := c.Get(ctx, want, PullOptions{UID: 1000})
	if err != nil || img.Digest != im.digest.String() {
		t.Fatalf("Get(pinned) = %+v, %v", img, err)
	}
	if !slices.Contains(img.Refs, "docker://"+ref) {
		t.Errorf("the job's tag is not among the user's names: %q", img.Refs)
	}
	// The tag is the user's own word: another user confirmed for the
	// digest does not see it.
	if _, err := c.Get(ctx, byDigest, PullOptions{UID: 2000}); err != nil {
		t.Fatal(err)
	}
	for _, i := range c.List(2000) {
		if slices.Contains(i.Refs, "docker://"+ref) {
			t.Errorf("user 2000 sees user 1000's pinned tag: %q", i.Refs)
		}
	}
	if err := c.Remove(ref, 1000); err != nil {
		t.Errorf("rmi by the job's tag: %v", err)
	}
}

// Two nodes' caches with one site image store: the second copies what
// the first built, fetching no blob from the registry.
func TestSharedStoreAcrossCaches(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("test/shared", "1", im)
	store := filepath.Join(t.TempDir(), "store")
	os.Mkdir(store, 0o700)
	withStore := func(o *Options) { o.SharedStore = store }
	a := openTestCache(t, []string{reg.host}, withStore)
	b := openTestCache(t, []string{reg.host}, withStore)
	ctx := context.Background()
	ia, err := a.Get(ctx, ref, PullOptions{UID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[digest.Digest]int{}
	for _, l := range im.layers {
		_, blobs[digest.FromBytes(l)] = reg.counts(digest.FromBytes(l))
	}
	ib, err := b.Get(ctx, ref, PullOptions{UID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if ia.Digest != ib.Digest || ib.Config.Cmd == nil && ia.Config.Cmd != nil {
		t.Errorf("b got %+v, a %+v", ib, ia)
	}
	for d, n0 := range blobs {
		if _, n := reg.counts(d); n != n0 || n0 == 0 {
			t.Errorf("layer %s fetched %d times by the first node, %d by the second", d, n0, n-n0)
		}
	}
	fa, _ := os.ReadFile(ia.Path)
	fb, _ := os.ReadFile(ib.Path)
	if len(fa) == 0 || string(fa) != string(fb) {
		t.Error("the second node's squashfs differs from the first's")
	}
}
