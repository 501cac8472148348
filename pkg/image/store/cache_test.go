package store

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// baseLayers is a small image: a setuid binary, a hard link, a symlink,
// and a second layer that deletes a file and makes a directory opaque.
func baseLayers() [][]imagetest.TarEntry {
	return [][]imagetest.TarEntry{
		{
			{Name: "bin", Type: tar.TypeDir},
			{Name: "bin/su", Body: "setuid", Mode: 0o4755},
			{Name: "bin/tool", Body: "tool", UID: 1000, GID: 1000},
			{Name: "bin/tool2", Type: tar.TypeLink, Link: "bin/tool", UID: 1000, GID: 1000},
			{Name: "bin/sh", Type: tar.TypeSymlink, Link: "tool"},
			{Name: "etc", Type: tar.TypeDir},
			{Name: "etc/gone", Body: "deleted above"},
			{Name: "opt", Type: tar.TypeDir},
			{Name: "opt/old", Body: "hidden by the opaque dir"},
		},
		{
			{Name: "etc/.wh.gone"},
			{Name: "opt/.wh..wh..opq"},
			{Name: "opt/new", Body: "new"},
			{Name: "etc/os-release", Body: "ID=test\n"},
		},
	}
}

var baseConfig = ImageConfig{Env: []string{"PATH=/bin", "A=1"}, Entrypoint: []string{"/bin/sh"},
	Cmd: []string{"-c", "true"}, WorkingDir: "/opt", User: "1000:1000"}

// listing is unsquashfs -lln of a squashfs: one line per entry.
func listing(t *testing.T, sqfs string) string {
	t.Helper()
	out, err := exec.Command("unsquashfs", "-lln", "-d", "", sqfs).CombinedOutput()
	if err != nil {
		t.Fatalf("unsquashfs -lln %s: %v\n%s", sqfs, err, out)
	}
	return string(out)
}

func lineFor(list, path string) string {
	for _, l := range strings.Split(list, "\n") {
		f := strings.Fields(l)
		if len(f) >= 6 && (f[5] == path || strings.HasSuffix(f[5], path) && f[5] == "/"+strings.TrimPrefix(path, "/")) {
			return l
		}
	}
	return ""
}

func TestGetPullsAndSquashes(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("test/base", "1", im)
	c := openTestCache(t, []string{reg.host}, nil)

	var mu sync.Mutex
	phases := map[string]bool{}
	img, err := c.Get(context.Background(), ref, PullOptions{UID: 1000, GID: 1000, Progress: func(p Progress) {
		mu.Lock()
		phases[p.Phase] = true
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != im.digest.String() {
		t.Errorf("digest %s, want %s", img.Digest, im.digest)
	}
	for _, p := range []string{"resolving", "downloading", "squashing", "done"} {
		if !phases[p] {
			t.Errorf("no %q progress report (got %v)", p, phases)
		}
	}
	if !slices.Equal(img.Config.Env, baseConfig.Env) || !slices.Equal(img.Config.Entrypoint, baseConfig.Entrypoint) ||
		!slices.Equal(img.Config.Cmd, baseConfig.Cmd) || img.Config.WorkingDir != "/opt" || img.Config.User != "1000:1000" {
		t.Errorf("config %+v, want %+v", img.Config, baseConfig)
	}
	if !slices.Equal(img.Refs, []string{"docker://" + ref}) || !slices.Equal(img.Users, []uint32{1000}) {
		t.Errorf("refs %v users %v", img.Refs, img.Users)
	}
	fi, err := os.Stat(img.Path)
	if err != nil || fi.Size() != img.Size || fi.Mode().Perm() != 0o600 {
		t.Fatalf("squashfs %s: %v %v", img.Path, fi, err)
	}
	list := listing(t, img.Path)
	for _, want := range []struct{ path, prefix string }{
		{"/bin/su", "-rwsr-xr-x 0/0"},
		{"/bin/tool", "-rw-r--r-- 1000/1000"},
		{"/bin/sh", "lrwxrwxrwx"},
		{"/opt/new", "-rw-r--r--"},
		{"/etc/os-release", "-rw-r--r--"},
	} {
		if l := lineFor(list, want.path); !strings.HasPrefix(l, want.prefix) {
			t.Errorf("%s: %q, want prefix %q", want.path, l, want.prefix)
		}
	}
	for _, gone := range []string{"/etc/gone", "/opt/old", "/etc/.wh.gone", "/opt/.wh..wh..opq"} {
		if l := lineFor(list, gone); l != "" {
			t.Errorf("%s is in the squashfs: %q", gone, l)
		}
	}
	cfg, err := readConfig(c.configPath(img.Digest))
	if err != nil || cfg.WorkingDir != "/opt" {
		t.Errorf("config beside the squashfs: %+v, %v", cfg, err)
	}
}

// TestGetCachedIsFast: a second Get of a cached image costs one manifest
// request and well under 50 ms.
func TestGetCachedIsFast(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("test/base", "1", im)
	c := openTestCache(t, []string{reg.host}, nil)
	if _, err := c.Get(context.Background(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	m0, b0 := reg.counts(digestOf(im.layers[0]))
	d := fastest(t, 3, func() error {
		_, err := c.Get(context.Background(), ref, PullOptions{})
		return err
	})
	m1, b1 := reg.counts(digestOf(im.layers[0]))
	if b1 != b0 || m1-m0 > 3 {
		t.Errorf("3 cached Gets made %d manifest and %d blob requests", m1-m0, b1-b0)
	}
	checkLatency(t, "cached Get", d, 50*time.Millisecond)
}

// One user's concurrent Gets of an image, by tag and by digest (a job's
// steps), share one download and one squash. Other users' pull their own
// (TestGetOtherUsersPullTheirOwn).
func TestGetConcurrentSharesOneDownloadAndSquash(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.blobDelay = 200 * time.Millisecond // keep the first pull in flight while the others arrive
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("test/base", "1", im)
	byDigest := reg.host + "/test/base@" + im.digest.String()
	// Whichever squashes (tar2sqfs, or mksquashfs without it) counts.
	counter := filepath.Join(t.TempDir(), "squash-runs")
	bin := t.TempDir()
	for _, prog := range []string{"mksquashfs", "tar2sqfs"} {
		script := "#!/bin/sh\ncase $1 in -version|--version) ;; *) echo run >> " + counter + ";; esac\nexec " + prog + " \"$@\"\n"
		if err := os.WriteFile(filepath.Join(bin, prog), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	c := openTestCache(t, []string{reg.host}, func(o *Options) {
		o.Mksquashfs, o.Tar2sqfs = filepath.Join(bin, "mksquashfs"), filepath.Join(bin, "tar2sqfs")
	})

	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	digests := make([]string, n)
	for i := range n {
		wg.Go(func() {
			r := ref
			if i%2 == 1 {
				r = byDigest // same image by another name: shared by digest
			}
			img, err := c.Get(context.Background(), r, PullOptions{UID: 1000})
			errs[i] = err
			if img != nil {
				digests[i] = img.Digest
			}
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil || digests[i] != im.digest.String() {
			t.Fatalf("Get %d: %s, %v", i, digests[i], errs[i])
		}
	}
	for _, l := range im.layers {
		if _, blobs := reg.counts(digestOf(l)); blobs != 1 {
			t.Errorf("layer %s downloaded %d times, want 1", digestOf(l), blobs)
		}
	}
	runs, _ := os.ReadFile(counter)
	if got := strings.Count(string(runs), "run"); got != 1 {
		t.Errorf("the image was squashed %d times, want 1", got)
	}
	if imgs := c.List(0); len(imgs) != 1 || !slices.Equal(imgs[0].Users, []uint32{1000}) {
		t.Errorf("List(0) = %+v", imgs)
	}
}

func digestOf(b []byte) digest.Digest { return digest.FromBytes(b) }

func TestPrivateImageNeedsTheRegistrysWord(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("private/app", "1", im)
	reg.users = map[string]string{"alice": "a-pw", "bob": "b-pw", "carol": "c-pw"}
	reg.acl = map[string][]string{"private/app": {"alice", "carol"}}
	c := openTestCache(t, []string{reg.host}, nil)
	alice := PullOptions{UID: 1001, AuthJSON: authJSON(reg.host, "alice", "a-pw")}
	if _, err := c.Get(context.Background(), ref, alice); err != nil {
		t.Fatal(err)
	}
	// bob has an account but no access; dave has none: the cached copy
	// must not be handed to either.
	for _, o := range []PullOptions{
		{UID: 1002, AuthJSON: authJSON(reg.host, "bob", "b-pw")},
		{UID: 1004},
		{UID: 1002, AuthJSON: authJSON(reg.host, "bob", "wrong")},
	} {
		_, err := c.Get(context.Background(), ref, o)
		t.Logf("uid %d sees: %v", o.UID, err)
		if !errors.Is(err, image.ErrUnauthorized) {
			t.Errorf("uid %d: %v, want image.ErrUnauthorized", o.UID, err)
		}
		if imgs := c.List(o.UID); len(imgs) != 0 {
			t.Errorf("uid %d sees %v", o.UID, imgs)
		}
		// Not by digest either.
		if _, err := c.Get(context.Background(), reg.host+"/private/app@"+im.digest.String(), o); !errors.Is(err, image.ErrUnauthorized) {
			t.Errorf("uid %d by digest: %v, want image.ErrUnauthorized", o.UID, err)
		}
	}
	// carol has access: the registry confirms the digest, no download.
	_, before := reg.counts(digestOf(im.layers[0]))
	img, err := c.Get(context.Background(), ref, PullOptions{UID: 1003, AuthJSON: authJSON(reg.host, "carol", "c-pw")})
	if err != nil {
		t.Fatal(err)
	}
	if _, after := reg.counts(digestOf(im.layers[0])); after != before {
		t.Errorf("carol's Get downloaded again")
	}
	if !slices.Equal(img.Users, []uint32{1003}) {
		t.Errorf("carol sees users %v, want only herself", img.Users)
	}
	if imgs := c.List(0); len(imgs) != 1 || !slices.Equal(imgs[0].Users, []uint32{1001, 1003}) {
		t.Errorf("List(0) = %+v", imgs)
	}
}

// A pull is its user's own: another user asking for the same image at the
// same time does not wait on it, read from the first user's source (a
// registry of theirs they can stall, outside review 14), or fail with it.
func TestGetOtherUsersPullTheirOwn(t *testing.T) {
	slow, site := newFakeRegistry(t), newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	alicesRef := slow.add("test/base", "1", im)
	bobsRef := site.add("test/base", "1", im)
	for _, l := range im.layers {
		slow.stall[digestOf(l)] = true
	}
	c := openTestCache(t, []string{slow.host, site.host}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	alice := make(chan error, 1)
	go func() {
		_, err := c.Get(ctx, alicesRef, PullOptions{UID: 1001})
		alice <- err
	}()
	for _, l := range im.layers {
		for _, n := slow.counts(digestOf(l)); n == 0; _, n = slow.counts(digestOf(l)) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	bobCtx, bobCancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer bobCancel()
	img, err := c.Get(bobCtx, bobsRef, PullOptions{UID: 1002})
	if err != nil || img.Digest != im.digest.String() {
		t.Fatalf("bob's pull, while alice's stalls: %v", err)
	}
	for _, l := range im.layers {
		if _, n := site.counts(digestOf(l)); n != 1 {
			t.Errorf("bob's registry served layer %s %d times, want 1", digestOf(l), n)
		}
	}
	cancel()
	<-alice
}
