package store

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

func writePolicy(t *testing.T, c *Cache, policy string) {
	t.Helper()
	if err := os.WriteFile(c.policy, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A squashfs file is the policy's transport "squashfs", scoped by its real
// path: a policy that rejects all but a registry runs no user's file, one
// that accepts a directory accepts files there (also through a symlink
// from elsewhere), and no other.
func TestPolicySquashfsFiles(t *testing.T) {
	c := openTestCache(t, nil, nil)
	file := publicCopy(t, imagetest.MakeSquashfs(t, map[string]string{"a": "a"}), 0o644)
	dir := filepath.Dir(file)
	user := nobodyDir(t)
	link := filepath.Join(user, "link.sqsh")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	other := publicCopy(t, imagetest.MakeSquashfs(t, map[string]string{"b": "b"}), 0o644)
	o := PullOptions{UID: nobody, GID: nobody}

	writePolicy(t, c, `{"default":[{"type":"reject"}],"transports":{"docker":{"registry.example":[{"type":"insecureAcceptAnything"}]}}}`)
	_, err := c.Get(context.Background(), file, o)
	if !errors.Is(err, image.ErrPolicy) {
		t.Fatalf("reject-all policy: %v, want image.ErrPolicy", err)
	}
	assertOneLine(t, err, file, "rejected by policy", "ask your admin")

	writePolicy(t, c, `{"default":[{"type":"reject"}],"transports":{"squashfs":{"`+dir+`":[{"type":"insecureAcceptAnything"}]}}}`)
	if _, err := c.Get(context.Background(), file, o); err != nil {
		t.Errorf("file in the accepted directory: %v", err)
	}
	if _, err := c.Get(context.Background(), link, o); err != nil {
		t.Errorf("symlink to it: %v", err)
	}
	if _, err := c.Get(context.Background(), other, o); !errors.Is(err, image.ErrPolicy) {
		t.Errorf("file elsewhere: %v, want image.ErrPolicy", err)
	}
	// Cached now; the policy still decides the next use.
	writePolicy(t, c, `{"default":[{"type":"reject"}]}`)
	if _, err := c.Get(context.Background(), file, o); !errors.Is(err, image.ErrPolicy) {
		t.Errorf("cached file under a tightened policy: %v, want image.ErrPolicy", err)
	}
	// Files carry no signatures.
	writePolicy(t, c, `{"default":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/dev/null"}]}`)
	if _, err := c.Get(context.Background(), file, o); !errors.Is(err, image.ErrPolicy) {
		t.Errorf("signedBy: %v, want image.ErrPolicy", err)
	}
}

// nobodyDir is a directory nobody may write.
func nobodyDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "squash-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return dir
}

// An image cached under a lax policy is not handed out under a strict
// one: not within tag_ttl, not by digest, not while the registry is down.
func TestPolicyCachedImages(t *testing.T) {
	reg := newFakeRegistry(t)
	im := newTestImage(t, baseConfig, baseLayers()...)
	ref := reg.add("test/app", "1", im)
	byDigest := reg.host + "/test/app@" + im.digest.String()
	c := openTestCache(t, []string{reg.host}, func(o *Options) { o.TagTTL = time.Hour })
	o := PullOptions{UID: 1000}
	for _, r := range []string{ref, byDigest} {
		if _, err := c.Get(context.Background(), r, o); err != nil {
			t.Fatal(err)
		}
	}
	writePolicy(t, c, `{"default":[{"type":"reject"}],"transports":{"docker":{"registry.example":[{"type":"insecureAcceptAnything"}]}}}`)
	for _, r := range []string{ref, byDigest} {
		_, err := c.Get(context.Background(), r, o)
		if !errors.Is(err, image.ErrPolicy) {
			t.Errorf("%s: %v, want image.ErrPolicy", r, err)
		} else {
			assertOneLine(t, err, r, "rejected by policy")
		}
	}
	// Signatures wanted: the registry is asked (and has none).
	writePolicy(t, c, `{"default":[{"type":"insecureAcceptAnything"}],"transports":{"docker":{"`+reg.host+`":[{"type":"signedBy","keyType":"GPGKeys","keyPath":"/dev/null"}]}}}`)
	m0, _ := reg.counts("")
	if _, err := c.Get(context.Background(), ref, o); !errors.Is(err, image.ErrPolicy) {
		t.Errorf("signedBy: %v, want image.ErrPolicy", err)
	}
	if m1, _ := reg.counts(""); m1 == m0 {
		t.Errorf("signedBy: served from the cache without asking the registry")
	}
	reg.srv.Close()
	if _, err := c.Get(context.Background(), reg.host+"/test/app:1", PullOptions{UID: 1000, Refresh: true}); err == nil {
		t.Errorf("registry down, signatures wanted: the cached image was handed out")
	}
	// A lax policy again: served from the cache as before.
	writePolicy(t, c, `{"default":[{"type":"insecureAcceptAnything"}]}`)
	if _, err := c.Get(context.Background(), ref, o); err != nil {
		t.Errorf("lax policy, cached: %v", err)
	}
}

// Local archives are judged under the path the user named, not the
// daemon's copy in its work directory.
func TestPolicyLocalArchives(t *testing.T) {
	c := openTestCache(t, nil, nil)
	im := newTestImage(t, baseConfig, baseLayers()...)
	dir := nobodyDir(t)
	layout := filepath.Join(dir, "layout")
	if err := os.Mkdir(layout, 0o755); err != nil {
		t.Fatal(err)
	}
	im.writeLayout(t, layout, "1")
	archive := filepath.Join(dir, "image.tar")
	tarDir(t, layout, archive)
	o := PullOptions{UID: nobody, GID: nobody}
	for _, tc := range []struct{ ref, policy string }{
		{"oci-archive:" + archive, `{"default":[{"type":"insecureAcceptAnything"}],"transports":{"oci-archive":{"` + dir + `":[{"type":"reject"}]}}}`},
		{"oci:" + layout + ":1", `{"default":[{"type":"insecureAcceptAnything"}],"transports":{"oci":{"` + dir + `":[{"type":"reject"}]}}}`},
	} {
		writePolicy(t, c, tc.policy)
		if _, err := c.Get(context.Background(), tc.ref, o); !errors.Is(err, image.ErrPolicy) {
			t.Errorf("%s under a policy rejecting %s: %v, want image.ErrPolicy", tc.ref, dir, err)
		}
		writePolicy(t, c, strings.Replace(tc.policy, dir, "/elsewhere", 1))
		if _, err := c.Get(context.Background(), tc.ref, o); err != nil {
			t.Errorf("%s rejected under a policy that names another directory: %v", tc.ref, err)
		}
	}
}
