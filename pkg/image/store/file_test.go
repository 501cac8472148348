package store

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

const nobody = 65534

func TestGetSquashfsFile(t *testing.T) {
	c := openTestCache(t, nil, nil)
	src := publicCopy(t, imagetest.MakeSquashfs(t, map[string]string{"etc/os-release": "ID=file\n"}, "-comp", "zstd"), 0o644)
	img, err := c.Get(context.Background(), src, PullOptions{UID: nobody, GID: nobody})
	if err != nil {
		t.Fatal(err)
	}
	if img.Path == src || !strings.HasPrefix(img.Path, c.images) {
		t.Fatalf("image path %s is not a copy in the cache", img.Path)
	}
	if !strings.Contains(listing(t, img.Path), "/etc/os-release") {
		t.Error("the copy lacks /etc/os-release")
	}
	// The same file again: no second copy, same image.
	d := fastest(t, 3, func() error {
		img2, err := c.Get(context.Background(), src, PullOptions{UID: nobody, GID: nobody})
		if err == nil && img2.Digest != img.Digest {
			err = fmt.Errorf("digest %s, want %s", img2.Digest, img.Digest)
		}
		return err
	})
	checkLatency(t, "Get of an unchanged squashfs file", d, 50*time.Millisecond)
	// The same content under another name, through GetFile: same image.
	other := filepath.Join(t.TempDir(), "copy.sqsh")
	b, _ := os.ReadFile(src)
	if err := os.WriteFile(other, b, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(other)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img3, err := c.GetFile(context.Background(), f, PullOptions{})
	if err != nil || img3.Digest != img.Digest {
		t.Fatalf("GetFile: %v, %v", img3, err)
	}
	if imgs := c.List(0); len(imgs) != 1 || len(imgs[0].Refs) != 2 {
		t.Errorf("List(0) = %+v; want one image with two names", imgs)
	}
	// Relative paths need the user's working directory.
	if _, err := c.Get(context.Background(), "./"+filepath.Base(src), PullOptions{Cwd: filepath.Dir(src)}); err != nil {
		t.Errorf("relative path with Cwd: %v", err)
	}
	if _, err := c.Get(context.Background(), "./x.sqsh", PullOptions{}); !errors.Is(err, image.ErrBadReference) {
		t.Errorf("relative path without Cwd: %v", err)
	}
}

// TestGetSquashfsFileAsUser: the daemon reads a user's path with the
// user's permissions, never as root.
func TestGetSquashfsFileAsUser(t *testing.T) {
	c := openTestCache(t, nil, nil)
	src := publicCopy(t, imagetest.MakeSquashfs(t, map[string]string{"secret": "root only"}), 0o600) // root's file
	_, err := c.Get(context.Background(), src, PullOptions{UID: nobody, GID: nobody})
	if !errors.Is(err, image.ErrPermission) {
		t.Fatalf("nobody read root's file: %v", err)
	}
	assertOneLine(t, err, src, "permission denied")
	for _, p := range []string{"/dev/zero", "/etc", filepath.Join(filepath.Dir(src), "absent")} {
		if _, err := c.Get(context.Background(), p, PullOptions{UID: nobody, GID: nobody}); err == nil {
			t.Errorf("%s: accepted", p)
		} else {
			t.Logf("%s: %v", p, err)
		}
	}
	// A group the user is in opens it.
	if err := os.Chmod(src, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(src, 0, 4242); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), src, PullOptions{UID: nobody, GID: nobody, Groups: []uint32{4242}}); err != nil {
		t.Errorf("with the file's group: %v", err)
	}
}

func TestGetSquashfsFileCorrupt(t *testing.T) {
	c := openTestCache(t, nil, nil)
	noise := make([]byte, 200000)
	if _, err := rand.Read(noise); err != nil {
		t.Fatal(err)
	}
	src := imagetest.MakeSquashfs(t, map[string]string{"a": string(noise)})
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"truncated.sqsh": b[:len(b)/3],
		"text.sqsh":      []byte("not a file system\n"),
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := c.Get(context.Background(), p, PullOptions{})
		if !errors.Is(err, image.ErrNotSquashfs) {
			t.Fatalf("%s: %v; want image.ErrNotSquashfs", name, err)
		}
		assertOneLine(t, err, p, "not a usable squashfs image")
	}
	assertClean(t, c)
}

// publicCopy copies file into a directory everyone may enter, with mode.
func publicCopy(t *testing.T, file string, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "squash-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, filepath.Base(file))
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	return p
}
