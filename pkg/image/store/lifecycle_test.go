package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/charge"
	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

func TestOpenRecoversFromAKilledDaemon(t *testing.T) {
	reg := newFakeRegistry(t)
	ref := reg.add("test/base", "1", newTestImage(t, baseConfig, baseLayers()...))
	c := openTestCache(t, []string{reg.host}, nil)
	img, err := c.Get(context.Background(), ref, PullOptions{UID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	// What a daemon killed at various points leaves behind.
	partial := filepath.Join(c.tmp, "pull-123456")
	if err := os.MkdirAll(filepath.Join(partial, "rootfs", "usr", "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(partial, "image.squashfs"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{
		filepath.Join(c.tmp, "auth-1.json"),
		filepath.Join(c.images, strings.Repeat("a", 64)+".squashfs"), // renamed in, index not yet written
		filepath.Join(c.images, ".deadbeef.json.tmp-1"),
		filepath.Join(c.dir, "."+indexName+".tmp-42"),
	}
	for _, p := range leftovers {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c2, err := Open(context.Background(), c.o)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	for _, p := range append(leftovers, partial) {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open", p)
		}
	}
	if imgs := c2.List(0); len(imgs) != 1 || imgs[0].Digest != img.Digest || imgs[0].Config.WorkingDir != "/opt" {
		t.Errorf("after reopening: %+v", imgs)
	}
	// An entry whose file went missing is dropped.
	c2.Close()
	if err := os.Remove(img.Path); err != nil {
		t.Fatal(err)
	}
	c3, err := Open(context.Background(), c.o)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if imgs := c3.List(0); len(imgs) != 0 {
		t.Errorf("entry without its file kept: %+v", imgs)
	}
	if ents, _ := os.ReadDir(c3.images); len(ents) != 0 {
		t.Errorf("orphan %s kept", ents[0].Name())
	}
}

func TestOpenErrors(t *testing.T) {
	imagetest.RequireRoot(t)
	policy, _, _ := testConfig(t, nil, "")
	dir := t.TempDir()
	c, err := Open(context.Background(), Options{Dir: dir, PolicyPath: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("cache dir mode %v, %v; want 0700", fi.Mode(), err)
	}
	missing := filepath.Join(t.TempDir(), "policy.json")
	bad := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(bad, []byte(`{"default":[{"type":"nonsense"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		o    Options
		is   error
		want string
	}{
		{Options{Dir: dir, PolicyPath: policy}, image.ErrLocked, dir},
		{Options{Dir: t.TempDir(), PolicyPath: missing}, image.ErrPolicy, missing},
		{Options{Dir: t.TempDir(), PolicyPath: bad}, image.ErrPolicy, bad},
		{Options{Dir: t.TempDir(), PolicyPath: policy, Compression: "lzma"}, nil, "kernel can mount"},
		{Options{PolicyPath: policy}, nil, "Dir is empty"},
	}
	for _, tc := range cases {
		_, err := Open(context.Background(), tc.o)
		if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v; want %v naming %q", tc.o, err, tc.is, tc.want)
		}
	}
}

// fakeEntries fills the index directly: eviction does not care how an
// image got there.
func fakeEntries(t *testing.T, c *Cache, sizes map[string]int64, used map[string]time.Time, users map[string][]uint32) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for d, size := range sizes {
		if err := os.WriteFile(c.imagePath(d), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(c.configPath(d), []byte("{}"), 0o600); err != nil {
			t.Fatal(err)
		}
		c.ix.Images[d] = &entry{Digest: d, Size: size, LastUsed: used[d], Users: users[d], Checks: contentChecks,
			Refs: map[string]*refUse{"docker://r/" + d[7:8] + ":1": {Users: users[d]}}}
	}
	if err := c.ix.save(c.dir); err != nil {
		t.Fatal(err)
	}
}

func digests(imgs []Image) []string {
	var out []string
	for _, i := range imgs {
		out = append(out, i.Digest[:8])
	}
	slices.Sort(out)
	return out
}

func TestEviction(t *testing.T) {
	now := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
	d := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 64) }
	ago := func(x time.Duration) time.Time { return now.Add(-x) }
	sizes := map[string]int64{d('a'): 100, d('b'): 100, d('c'): 100, d('e'): 100}
	used := map[string]time.Time{d('a'): ago(50 * time.Hour), d('b'): ago(3 * time.Hour), d('c'): ago(2 * time.Hour), d('e'): ago(10 * time.Second)}
	cases := []struct {
		name     string
		maxBytes int64
		maxAge   time.Duration
		all      bool
		pin      string
		gone     []string
	}{
		{name: "no limits"},
		{name: "by age", maxAge: 24 * time.Hour, gone: []string{"sha256:a"}},
		{name: "by size, LRU first", maxBytes: 250, gone: []string{"sha256:a", "sha256:b"}},
		{name: "pinned is kept", maxBytes: 250, pin: d('a'), gone: []string{"sha256:b", "sha256:c"}},
		{name: "just used is spared the size limit", maxBytes: 50, gone: []string{"sha256:a", "sha256:b", "sha256:c"}},
		{name: "all", all: true, pin: d('c'), gone: []string{"sha256:a", "sha256:b", "sha256:e"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := openTestCache(t, nil, func(o *Options) { o.MaxBytes, o.MaxAge = tc.maxBytes, tc.maxAge })
			c.now = func() time.Time { return now }
			fakeEntries(t, c, sizes, used, nil)
			if tc.pin != "" {
				release, err := c.Pin(tc.pin)
				if err != nil {
					t.Fatal(err)
				}
				defer release()
				c.ix.Images[tc.pin].LastUsed = used[tc.pin] // Pin marks it used
			}
			gone, err := c.Prune(context.Background(), tc.all, 0)
			if err != nil {
				t.Fatal(err)
			}
			if got := digests(gone); !slices.Equal(got, tc.gone) {
				t.Errorf("evicted %v, want %v", got, tc.gone)
			}
			for _, g := range gone {
				if _, err := os.Stat(g.Path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s still on disk", g.Path)
				}
			}
			if len(c.List(0))+len(gone) != len(sizes) {
				t.Errorf("List has %d, evicted %d, of %d", len(c.List(0)), len(gone), len(sizes))
			}
		})
	}
}

func TestEvictionAfterPull(t *testing.T) {
	reg := newFakeRegistry(t)
	r1 := reg.add("test/one", "1", newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "one", Body: strings.Repeat("1", 5000)}}))
	r2 := reg.add("test/two", "1", newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "two", Body: strings.Repeat("2", 5000)}}))
	var evicted atomic.Int64
	c := openTestCache(t, []string{reg.host}, func(o *Options) { o.MaxBytes = 40 << 10; o.Evicted = func(n int) { evicted.Add(int64(n)) } })
	clock := time.Now()
	c.now = func() time.Time { return clock }
	img1, err := c.Get(context.Background(), r1, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(2 * evictGrace)
	if _, err := c.Get(context.Background(), r2, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	// The second image's room (its squashfs bound, some 38K) does not fit
	// beside the first: the first went to make room.
	if got := c.List(0); len(got) != 1 || got[0].Digest == img1.Digest {
		t.Errorf("after the second pull: %v", digests(got))
	}
	if n := evicted.Load(); n != 1 {
		t.Errorf("Evicted told of %d images, want 1", n)
	}
}

func TestPinRemoveListPerUser(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("test/base", "1", im)
	other := reg.add("test/other", "1", newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "x", Body: "x"}}))
	c := openTestCache(t, []string{reg.host}, nil)
	ctx := context.Background()
	for _, uid := range []uint32{1001, 1002} {
		if _, err := c.Get(ctx, ref, PullOptions{UID: uid}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Get(ctx, other, PullOptions{UID: 1003}); err != nil {
		t.Fatal(err)
	}
	if got := c.List(1001); len(got) != 1 || !slices.Equal(got[0].Users, []uint32{1001}) || !slices.Equal(got[0].Refs, []string{"docker://" + ref}) {
		t.Errorf("List(1001) = %+v", got)
	}
	if got := c.List(0); len(got) != 2 {
		t.Errorf("List(0) has %d images", len(got))
	}
	if err := c.Remove(other, 1001); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("1001 removing 1003's image: %v", err)
	}
	if _, err := c.Pin("sha256:" + strings.Repeat("0", 64)); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("Pin(unknown) = %v", err)
	}
	release, err := c.Pin(im.digest.String())
	if err != nil {
		t.Fatal(err)
	}
	// 1001 drops their claim (1002 still has one): allowed while pinned.
	if err := c.Remove(ref, 1001); err != nil {
		t.Fatal(err)
	}
	if got := c.List(1001); len(got) != 0 {
		t.Errorf("after Remove, 1001 sees %v", digests(got))
	}
	// Deleting it is not, for the last user or for root.
	for _, uid := range []uint32{1002, 0} {
		if err := c.Remove(ref, uid); !errors.Is(err, image.ErrInUse) {
			t.Errorf("Remove by %d while pinned: %v", uid, err)
		}
	}
	if gone, _ := c.Prune(ctx, true, 0); len(gone) != 1 || gone[0].Digest == im.digest.String() {
		t.Errorf("Prune(all) removed %v; want the unpinned image only", digests(gone))
	}
	release()
	release() // idempotent
	if err := c.Remove(im.digest.String(), 0); err != nil {
		t.Fatal(err)
	}
	if got := c.List(0); len(got) != 0 {
		t.Errorf("left: %v", digests(got))
	}
	if ents, _ := os.ReadDir(c.images); len(ents) != 0 {
		t.Errorf("files left: %s", ents[0].Name())
	}
}

func TestPruneAllAsUser(t *testing.T) {
	c := openTestCache(t, nil, nil)
	d := func(ch byte) string { return "sha256:" + strings.Repeat(string(ch), 64) }
	fakeEntries(t, c, map[string]int64{d('a'): 1, d('b'): 1}, nil,
		map[string][]uint32{d('a'): {1001}, d('b'): {1001, 1002}})
	gone, err := c.Prune(context.Background(), true, 1001)
	if err != nil {
		t.Fatal(err)
	}
	if got := digests(gone); !slices.Equal(got, []string{"sha256:a", "sha256:b"}) {
		t.Errorf("1001 pruned %v", got)
	}
	if got := c.List(0); len(got) != 1 || got[0].Digest != d('b') || !slices.Equal(got[0].Users, []uint32{1002}) {
		t.Errorf("left %+v; want b for 1002 only", got)
	}
}

// Short names through registries.conf; with no search registry nor alias a
// short name is Docker Hub's (TestShortNameDefaultsToDockerHub: this machine
// may not reach it).
func TestShortNames(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	reg.add("library/app", "1", im)
	reg.add("tools/aliased", "2", im)
	down := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cases := []struct {
		name  string
		conf  string
		ref   string
		err   error
		want  string
		canon string
	}{
		{name: "one search registry", conf: fmt.Sprintf("unqualified-search-registries = [%q]", reg.host),
			ref: "library/app:1", canon: "docker://" + reg.host + "/library/app:1"},
		{name: "alias", conf: fmt.Sprintf("[aliases]\n\"myapp\" = %q", reg.host+"/tools/aliased"),
			ref: "myapp:2", canon: "docker://" + reg.host + "/tools/aliased:2"},
		{name: "ambiguous", conf: fmt.Sprintf("unqualified-search-registries = [%q, \"registry.invalid\"]", reg.host),
			ref: "library/app:1", err: image.ErrShortName, want: "ambiguous: it could be " + reg.host + "/library/app:1 or registry.invalid/library/app:1: use a fully qualified name"},
		{name: "search registry down", conf: fmt.Sprintf("unqualified-search-registries = [%q]", down),
			ref: "library/app:1", err: image.ErrRegistryUnreachable, want: "registry " + down + ": dial tcp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := openTestCache(t, nil, func(o *Options) {
				_, o.RegistriesConf, _ = testConfig(t, []string{reg.host, down}, tc.conf)
				o.RegistryTimeout, o.RegistryAttempts = time.Second, 1
			})
			img, err := c.Get(context.Background(), tc.ref, PullOptions{})
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("%v; want %v", err, tc.err)
				}
				assertOneLine(t, err, tc.ref, tc.want)
				if errors.Is(err, image.ErrShortName) && !strings.Contains(err.Error(), "use a fully qualified name") {
					t.Errorf("no hint in %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(img.Refs, []string{tc.canon}) {
				t.Errorf("refs %v, want %s", img.Refs, tc.canon)
			}
			if err := c.Remove(tc.ref, 0); err != nil {
				t.Errorf("Remove by the short name: %v", err)
			}
		})
	}
}

func TestTagTTLAndRegistryOutage(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("test/base", "1", im)
	byDigest := reg.host + "/test/base@" + im.digest.String()
	c := openTestCache(t, []string{reg.host}, func(o *Options) { o.TagTTL = time.Hour })
	ctx := context.Background()
	for _, r := range []string{ref, byDigest} {
		if _, err := c.Get(ctx, r, PullOptions{UID: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	m0, _ := reg.counts(im.digest)
	for _, r := range []string{ref, byDigest} {
		if _, err := c.Get(ctx, r, PullOptions{UID: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	if m1, _ := reg.counts(im.digest); m1 != m0 {
		t.Errorf("within TagTTL, %d manifest requests", m1-m0)
	}
	// Another user must still go to the registry.
	if _, err := c.Get(ctx, ref, PullOptions{UID: 2000}); err != nil {
		t.Fatal(err)
	}
	m2, _ := reg.counts(im.digest)
	if m2 == m0 {
		t.Error("a new user was served without the registry's word")
	}
	// An explicit pull asks the registry even within TagTTL.
	if _, err := c.Get(ctx, ref, PullOptions{UID: 1000, Refresh: true}); err != nil {
		t.Fatal(err)
	}
	if m3, _ := reg.counts(im.digest); m3 == m2 {
		t.Error("Refresh was served from the cache")
	}
	// Registry gone: confirmed users keep working, others get the error.
	c.o.TagTTL = 0
	reg.srv.Close()
	if _, err := c.Get(ctx, ref, PullOptions{UID: 1000}); err != nil {
		t.Errorf("confirmed user during an outage: %v", err)
	}
	if _, err := c.Get(ctx, ref, PullOptions{UID: 3000}); !errors.Is(err, image.ErrRegistryUnreachable) {
		t.Errorf("unconfirmed user during an outage: %v", err)
	}
}

func TestFlightSharesProgressAndCancelsWhenAllLeave(t *testing.T) {
	var g flightGroup
	started := make(chan struct{})
	var cancelled sync.WaitGroup
	cancelled.Add(1)
	fn := func(ctx context.Context, report func(Progress)) (*Image, error) {
		close(started)
		report(Progress{Phase: "downloading"})
		<-ctx.Done()
		cancelled.Done()
		return nil, ctx.Err()
	}
	var got [2]chan Progress
	ctx1, cancel1 := context.WithCancel(context.Background())
	ctx2, cancel2 := context.WithCancel(context.Background())
	errs := make(chan error, 2)
	for i, ctx := range []context.Context{ctx1, ctx2} {
		got[i] = make(chan Progress, 4)
		ch := got[i]
		go func() {
			_, err := g.do(ctx, "k", func(p Progress) { ch <- p }, nil, fn)
			errs <- err
		}()
		if i == 0 {
			<-started
		}
	}
	time.Sleep(50 * time.Millisecond) // let the second caller join
	cancel1()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	// The work goes on for the second caller...
	select {
	case <-waitDone(&cancelled):
		t.Fatal("cancelled while a caller still waits")
	case <-time.After(100 * time.Millisecond):
	}
	cancel2()
	<-errs
	// ...and stops when it leaves.
	select {
	case <-waitDone(&cancelled):
	case <-time.After(2 * time.Second):
		t.Fatal("not cancelled after every caller left")
	}
	if p := <-got[0]; p.Phase != "downloading" {
		t.Errorf("first caller got %+v", p)
	}
}

func waitDone(wg *sync.WaitGroup) chan struct{} {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	return ch
}

// TestMirror: registries.conf mirrors are honoured (by containers/image);
// the primary does not even resolve.
func TestMirror(t *testing.T) {
	mirror := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	mirror.add("test/base", "1", im)
	conf := fmt.Sprintf("[[registry]]\nlocation = \"registry.invalid\"\n[[registry.mirror]]\nlocation = %q\ninsecure = true\n", mirror.host)
	c := openTestCache(t, nil, func(o *Options) { _, o.RegistriesConf, _ = testConfig(t, nil, conf) })
	img, err := c.Get(context.Background(), "registry.invalid/test/base:1", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != im.digest.String() || !slices.Equal(img.Refs, []string{"docker://registry.invalid/test/base:1"}) {
		t.Errorf("got %s %v", img.Digest, img.Refs)
	}
}

// TestManifestList: from a multi-platform image, the instance for this
// machine is pulled and cached under its own digest; the list's digest
// works as a reference too.
func TestManifestList(t *testing.T) {
	reg := newFakeRegistry(t)
	ours := newTestImage(t, baseConfig, baseLayers()...)
	other := newTestImage(t, ImageConfig{WorkingDir: "/wrong"}, []imagetest.TarEntry{{Name: "wrong", Body: "arch"}})
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	ref, list := reg.addIndex("test/multi", "1", map[string]*testImage{"linux/" + runtime.GOARCH: ours, "linux/" + otherArch: other})
	c := openTestCache(t, []string{reg.host}, nil)
	for _, r := range []string{ref, reg.host + "/test/multi@" + list.String()} {
		img, err := c.Get(context.Background(), r, PullOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if img.Digest != ours.digest.String() || img.Config.WorkingDir != "/opt" {
			t.Errorf("%s: got %s %+v; want this machine's instance %s", r, img.Digest, img.Config, ours.digest)
		}
	}
	if _, blobs := reg.counts(digestOf(other.layers[0])); blobs != 0 {
		t.Error("the other platform's layer was downloaded")
	}
}

// A user's prune and rmi touch only what no one else uses; root's all.
func TestSoleUser(t *testing.T) {
	c := openTestCache(t, nil, nil)
	d := func(ch byte) string { return "sha256:" + strings.Repeat(string(ch), 64) }
	fakeEntries(t, c, map[string]int64{d('a'): 1, d('b'): 1}, nil,
		map[string][]uint32{d('a'): {1001}, d('b'): {1001, 1002}})
	for _, tc := range []struct {
		digest string
		uid    uint32
		want   bool
	}{
		{d('a'), 1001, true}, {d('b'), 1001, false}, {d('a'), 1002, false}, {d('b'), 1002, false},
		{d('a'), 0, true}, {d('b'), 0, true}, {d('c'), 1001, false},
	} {
		if got := c.SoleUser(tc.digest, tc.uid); got != tc.want {
			t.Errorf("SoleUser(%.8s, %d) = %v, want %v", tc.digest[7:], tc.uid, got, tc.want)
		}
	}
}

// A flight's helpers are charged to one of the callers still there (the
// earliest whose place takes them): when the caller that started a shared
// pull leaves, or its process has gone, the pull goes on for the others,
// charged to them (outside review 13: it failed for them, placing the
// next helper into the first caller's gone process's cgroups).
func TestFlightChargesHelpersToCallersStillThere(t *testing.T) {
	var g flightGroup
	var mu sync.Mutex
	var placed []string
	placer := func(who string, err error) charge.Placer {
		return func(int) error {
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				placed = append(placed, who)
			}
			return err
		}
	}
	step := make(chan struct{})
	results := make(chan error, 1)
	fn := func(ctx context.Context, _ func(Progress)) (*Image, error) {
		for range step {
			if err := charge.Place(ctx, 1); err != nil {
				return nil, err
			}
			results <- nil
		}
		return &Image{}, nil
	}
	ctxA, cancelA := context.WithCancel(charge.With(context.Background(), placer("alice", nil)))
	ctxB := charge.With(context.Background(), placer("bob", nil))
	ctxC := charge.With(context.Background(), placer("carol", errors.New("her process is gone")))
	errs := make(chan error, 3)
	go func() { _, err := g.do(ctxA, "k", nil, nil, fn); errs <- err }()
	for !g.running("k") {
		time.Sleep(time.Millisecond)
	}
	go func() { _, err := g.do(ctxC, "k", nil, nil, fn); errs <- err }()
	time.Sleep(20 * time.Millisecond)
	go func() { _, err := g.do(ctxB, "k", nil, nil, fn); errs <- err }()
	time.Sleep(20 * time.Millisecond)
	step <- struct{}{}
	<-results
	cancelA()
	if err := <-errs; !errors.Is(err, context.Canceled) {
		t.Fatalf("alice: %v", err)
	}
	step <- struct{}{}
	<-results
	close(step)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("a caller still there: %v", err)
		}
	}
	if want := []string{"alice", "bob"}; !slices.Equal(placed, want) {
		t.Fatalf("helpers charged to %q, want %q", placed, want)
	}
}
