package store

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// assertClean checks that a failed Get left nothing behind: no entry, no
// image file and, once background clean-up is done, no work in tmp.
func assertClean(t *testing.T, c *Cache) {
	t.Helper()
	c.wait()
	if imgs := c.List(0); len(imgs) != 0 {
		t.Errorf("index has %d images after a failed pull", len(imgs))
	}
	for _, d := range []string{c.images, c.tmp} {
		if ents, _ := os.ReadDir(d); len(ents) != 0 {
			t.Errorf("%s holds %s after a failed pull", d, ents[0].Name())
		}
	}
}

// assertOneLine checks the user-visible form: one line, the reference
// quoted, the cause and the hint.
func assertOneLine(t *testing.T, err error, ref string, want ...string) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("error spans lines: %q", msg)
	}
	if !strings.Contains(msg, fmt.Sprintf("%q", ref)) {
		t.Errorf("error does not name %q: %s", ref, msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q lacks %q", msg, w)
		}
	}
	t.Logf("user sees: %s", msg)
}

func TestGetFaults(t *testing.T) {
	reg := newFakeRegistry(t)
	good := newTestImage(t, baseConfig, baseLayers()...)
	reg.add("test/base", "1", good)
	host := t.TempDir()
	unsafe := map[string][]imagetest.TarEntry{
		"dotdot":   {{Name: "../../../../tmp/escaped", Body: "x"}},
		"abslink":  {{Name: "evil", Type: tar.TypeSymlink, Link: host}, {Name: "evil/pwned", Body: "x"}},
		"hardlink": {{Name: "shadow", Type: tar.TypeLink, Link: "../../../etc/shadow"}},
		"device":   {{Name: "dev", Type: tar.TypeDir}, {Name: "dev/sda", Type: tar.TypeBlock, Major: 8}},
	}
	for name, layer := range unsafe {
		reg.add("unsafe/"+name, "1", newTestImage(t, ImageConfig{}, baseLayers()[0], layer))
	}
	corrupt := newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "f", Body: "some content"}})
	reg.add("test/corrupt", "1", corrupt)
	reg.corrupt[digestOf(corrupt.layers[0])] = true
	long := newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "g", Body: "other content"}})
	reg.add("test/long", "1", long)
	reg.long[digestOf(long.layers[0])] = true

	cases := []struct {
		ref  string
		kind error
		want []string
	}{
		{"test/base:2", image.ErrManifestUnknown, []string{"manifest unknown: check the image name and tag"}},
		{"test/nothing:1", image.ErrManifestUnknown, []string{"manifest unknown"}},
		{"test/corrupt:1", image.ErrDigestMismatch, []string{"content does not match its digest", digestOf(corrupt.layers[0]).String(), "retry"}},
		{"test/long:1", image.ErrDigestMismatch, []string{"more than the", "bytes the manifest says"}},
		{"unsafe/dotdot:1", image.ErrUnsafeLayer, []string{"layer 2 of 2", `entry "../../../../tmp/escaped": path leaves the image root`}},
		{"unsafe/abslink:1", image.ErrUnsafeLayer, []string{`entry "evil/pwned": goes through absolute symlink "evil"`}},
		{"unsafe/hardlink:1", image.ErrUnsafeLayer, []string{`entry "shadow": hard link to "../../../etc/shadow", outside the image root`}},
		{"unsafe/device:1", image.ErrUnsafeLayer, []string{`entry "dev/sda": is a block device (8,0)`}},
	}
	for _, tc := range cases {
		t.Run(tc.ref, func(t *testing.T) {
			c := openTestCache(t, []string{reg.host}, nil)
			ref := reg.host + "/" + tc.ref
			_, err := c.Get(context.Background(), ref, PullOptions{UID: 1000})
			if !errors.Is(err, tc.kind) {
				t.Fatalf("error %v; want %v", err, tc.kind)
			}
			assertOneLine(t, err, ref, tc.want...)
			assertClean(t, c)
			if ents, _ := os.ReadDir(host); len(ents) != 0 {
				t.Errorf("the host directory got %s", ents[0].Name())
			}
		})
	}
}

func TestGetRegistryDown(t *testing.T) {
	// A port nobody listens on, and a server that accepts and never answers.
	closed := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	silent := l.Addr().String()
	for _, host := range []string{closed, silent} {
		t.Run(host, func(t *testing.T) {
			c := openTestCache(t, []string{closed, silent}, func(o *Options) {
				o.RegistryTimeout, o.RegistryAttempts = 500*time.Millisecond, 3
			})
			ref := host + "/test/base:1"
			start := time.Now()
			_, err := c.Get(context.Background(), ref, PullOptions{})
			took := time.Since(start)
			if !errors.Is(err, image.ErrRegistryUnreachable) {
				t.Fatalf("error %v; want image.ErrRegistryUnreachable", err)
			}
			assertOneLine(t, err, ref, "registry unreachable: registry "+host, "check the name and that the registry is up")
			// 3 attempts of 0.5 s plus back-off.
			if took > 5*time.Second {
				t.Errorf("gave up after %s", took)
			}
			assertClean(t, c)
		})
	}
}

func TestGetStalledDownload(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "f", Body: strings.Repeat("x", 1<<16)}})
	ref := reg.add("test/stall", "1", im)
	reg.stall[digestOf(im.layers[0])] = true
	c := openTestCache(t, []string{reg.host}, func(o *Options) { o.RegistryTimeout, o.RegistryAttempts = 300*time.Millisecond, 1 })
	start := time.Now()
	_, err := c.Get(context.Background(), ref, PullOptions{})
	if !errors.Is(err, image.ErrRegistryUnreachable) || time.Since(start) > 5*time.Second {
		t.Fatalf("after %s: %v; want image.ErrRegistryUnreachable quickly", time.Since(start), err)
	}
	assertOneLine(t, err, ref, "no data for 300ms")
	assertClean(t, c)
}

// TestGetWrongCredentials runs Debian's docker-registry with htpasswd auth.
func TestGetWrongCredentials(t *testing.T) {
	imagetest.RequireRoot(t)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("alice:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	host := startDockerRegistry(t, htpasswd)
	ref := push(t, host, "alice", "s3cret", "team/app", "1", newTestImage(t, baseConfig, baseLayers()...))
	c := openTestCache(t, []string{host}, nil)
	for _, auth := range [][]byte{authJSON(host, "alice", "wrong"), nil, authJSON(host, "mallory", "s3cret")} {
		_, err := c.Get(context.Background(), ref, PullOptions{UID: 1000, AuthJSON: auth})
		if !errors.Is(err, image.ErrUnauthorized) {
			t.Fatalf("error %v; want image.ErrUnauthorized", err)
		}
		assertOneLine(t, err, ref, "unauthorized: registry "+host+" refused access", "auth.json")
	}
	assertClean(t, c)
	img, err := c.Get(context.Background(), ref, PullOptions{UID: 1000, AuthJSON: authJSON(host, "alice", "s3cret")})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(listing(t, img.Path), "/bin/su") {
		t.Error("the image pulled with good credentials lacks /bin/su")
	}
	// The unknown-tag case against the real registry too.
	_, err = c.Get(context.Background(), host+"/team/app:2", PullOptions{UID: 1000, AuthJSON: authJSON(host, "alice", "s3cret")})
	if !errors.Is(err, image.ErrManifestUnknown) {
		t.Fatalf("unknown tag: %v", err)
	}
	// The auth files written for these pulls are gone.
	if ents, _ := filepath.Glob(filepath.Join(c.tmp, "auth-*")); len(ents) != 0 {
		t.Errorf("auth files left: %v", ents)
	}
}

// TestGetDiskFullMidSquash puts the cache on a tmpfs that holds the
// unpacked image but not also its squashfs.
func TestGetDiskFullMidSquash(t *testing.T) {
	imagetest.RequireRoot(t)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=12m,mode=0700", "podman-hpc-test", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = syscall.Unmount(mnt, syscall.MNT_DETACH) })
	noise := make([]byte, 7<<20) // incompressible: the squashfs is as big
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	reg := newFakeRegistry(t)
	big := reg.add("test/big", "1", newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "noise", Body: string(noise)}}))
	small := reg.add("test/base", "1", newTestImage(t, baseConfig, baseLayers()...))
	// Without max_image_size and cache_max_size, which would refuse the
	// image before.
	c := openTestCache(t, []string{reg.host}, func(o *Options) {
		o.Dir, o.MaxImageSize, o.MaxBytes = filepath.Join(mnt, "cache"), -1, -1
	})
	_, err := c.Get(context.Background(), big, PullOptions{})
	if !errors.Is(err, image.ErrNoSpace) {
		t.Fatalf("error %v; want image.ErrNoSpace", err)
	}
	assertOneLine(t, err, big, "no space left on device", "cache is full")
	assertClean(t, c)
	// Still consistent: the next pull works, and so does reopening.
	if _, err := c.Get(context.Background(), small, PullOptions{}); err != nil {
		t.Fatalf("after the failed pull: %v", err)
	}
	c.Close()
	c2, err := Open(context.Background(), c.o)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if imgs := c2.List(0); len(imgs) != 1 {
		t.Errorf("after reopening: %d images, want 1", len(imgs))
	}
}

func TestGetCancelledLeavesNothing(t *testing.T) {
	reg := newFakeRegistry(t)
	reg.blobDelay = 2 * time.Second
	ref := reg.add("test/base", "1", newTestImage(t, baseConfig, baseLayers()...))
	c := openTestCache(t, []string{reg.host}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := c.Get(ctx, ref, PullOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v; want the context's", err)
	}
	// The pull goes on in the background only while someone waits; nobody
	// does, so it stops and cleans up.
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.flights.mu.Lock()
		n := len(c.flights.m)
		c.flights.mu.Unlock()
		ents, _ := os.ReadDir(c.tmp)
		if n == 0 && len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %d flights and %d work entries", n, len(ents))
		}
		time.Sleep(50 * time.Millisecond)
	}
	assertClean(t, c)
}

// TestGetPolicyRejects: policy.json is applied on every Get, cached image
// or not.
func TestGetPolicyRejects(t *testing.T) {
	reg := newFakeRegistry(t)
	ref := reg.add("test/base", "1", newTestImage(t, baseConfig, baseLayers()...))
	c := openTestCache(t, []string{reg.host}, nil)
	if _, err := c.Get(context.Background(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.policy, []byte(`{"default":[{"type":"reject"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := c.Get(context.Background(), ref, PullOptions{})
	if !errors.Is(err, image.ErrPolicy) {
		t.Fatalf("%v; want image.ErrPolicy", err)
	}
	assertOneLine(t, err, ref, "rejected by policy")
}

// A registry that serves an image's manifest but not its config or a
// layer: the pull says which the repository lacks, and what to do.
func TestPullFromRepositoryLackingBlobs(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, ImageConfig{}, []imagetest.TarEntry{{Name: "f", Body: "x"}})
	noConfig := reg.addManifestOnly("test/manifest-only", "1", im)
	c := openTestCache(t, []string{reg.host}, nil)
	_, err := c.Get(context.Background(), noConfig, PullOptions{UID: 1001})
	if !errors.Is(err, image.ErrIncompleteImage) {
		t.Fatalf("%v; want image.ErrIncompleteImage", err)
	}
	assertOneLine(t, err, noConfig, "lacks the image's config")
	noLayer := reg.add("test/no-layer", "1", im)
	reg.mu.Lock()
	delete(reg.blobs, digestOf(im.layers[0]))
	reg.mu.Unlock()
	_, err = c.Get(context.Background(), noLayer, PullOptions{UID: 1001})
	if !errors.Is(err, image.ErrIncompleteImage) {
		t.Fatalf("%v; want image.ErrIncompleteImage", err)
	}
	assertOneLine(t, err, noLayer, "layer "+digestOf(im.layers[0]).String()+": the repository "+reg.host+"/test/no-layer does not have it")
}
