package squashfs

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// SquashTree reads the tree with its owner's credentials, never root's:
// what the owner may read is saved (as root's), what they may not fails the
// squash, and a symlink is saved as one, never followed.
func TestSquashTreeReadsAsOwner(t *testing.T) {
	imagetest.RequireRoot(t)
	imagetest.RequireBinary(t, "mksquashfs")
	imagetest.RequireBinary(t, "unsquashfs")
	const uid, gid, group = 4242, 4243, 4244
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("root only"), 0o600); err != nil {
		t.Fatal(err)
	}
	type file struct {
		name     string
		mode     os.FileMode
		uid, gid int
	}
	tests := []struct {
		name    string
		files   []file
		link    string // tree/link's target, when set
		groups  []uint32
		wantErr string
	}{
		{name: "the owner's files, mode 0 too", files: []file{{"a", 0o600, uid, gid}, {"b", 0, uid, gid}}},
		{name: "a symlink to a root-only file", link: secret},
		{name: "root's file", files: []file{{"r", 0o600, 0, 0}}, wantErr: "r"},
		{name: "a file of root's group", files: []file{{"g", 0o640, 0, 0}}, wantErr: "g"},
		// The owner's groups replace the daemon's (setgroups).
		{name: "a file of one of the owner's groups", files: []file{{"s", 0o640, 0, group}}, groups: []uint32{group}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tree := filepath.Join(t.TempDir(), "tree")
			if err := os.Mkdir(tree, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(tree, uid, gid); err != nil {
				t.Fatal(err)
			}
			for _, f := range tc.files {
				p := filepath.Join(tree, f.name)
				if err := os.WriteFile(p, []byte("data of "+f.name), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chown(p, f.uid, f.gid); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(p, f.mode); err != nil {
					t.Fatal(err)
				}
			}
			if tc.link != "" {
				if err := os.Symlink(tc.link, filepath.Join(tree, "link")); err != nil {
					t.Fatal(err)
				}
			}
			out := filepath.Join(t.TempDir(), "out.sqsh")
			if err := os.WriteFile(out, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			err := SquashTree(context.Background(), tree, out, TreeOptions{
				Compression: "lz4", Scratch: t.TempDir(),
				Owner: Owner{UID: uid, GID: gid, Groups: tc.groups},
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), " /"+tc.wantErr) {
					t.Fatalf("err = %v, want the unreadable /%s named", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			list, err := exec.Command("unsquashfs", "-lls", out).CombinedOutput()
			if err != nil {
				t.Fatalf("unsquashfs: %v\n%s", err, list)
			}
			for _, line := range strings.Split(string(list), "\n") {
				if strings.Contains(line, "squashfs-root") && !strings.Contains(line, " root/root ") {
					t.Errorf("not root's: %s", line)
				}
			}
			for _, f := range tc.files {
				b, _ := exec.Command("unsquashfs", "-cat", out, f.name).Output()
				if string(b) != "data of "+f.name {
					t.Errorf("%s holds %q", f.name, b)
				}
			}
			if tc.link != "" && !strings.Contains(string(list), "squashfs-root/link -> "+secret) {
				t.Errorf("the link is not saved as a symlink:\n%s", list)
			}
		})
	}
}

// A squash bounded by MaxSize stops writing at the bound: the file never
// grows past it, and the error says why.
func TestSquashTreeMaxSize(t *testing.T) {
	imagetest.RequireRoot(t)
	imagetest.RequireBinary(t, "mksquashfs")
	const uid, gid = 4242, 4243
	tree := filepath.Join(t.TempDir(), "tree")
	if err := os.Mkdir(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	// 8 MiB that do not compress.
	data := make([]byte, 8<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "big"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tree, filepath.Join(tree, "big")} {
		if err := os.Chown(p, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		max     int64
		wantErr bool
	}{{max: 1 << 20, wantErr: true}, {max: 64 << 20}} {
		out := filepath.Join(t.TempDir(), "out.sqsh")
		if err := os.WriteFile(out, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		err := SquashTree(context.Background(), tree, out, TreeOptions{
			Compression: "lz4", Scratch: t.TempDir(), Owner: Owner{UID: uid, GID: gid}, MaxSize: tc.max,
		})
		fi, serr := os.Stat(out)
		if serr != nil {
			t.Fatal(serr)
		}
		if tc.wantErr {
			if !errors.Is(err, image.ErrTooLarge) || !strings.Contains(err.Error(), "max_image_size") {
				t.Errorf("max %d: err = %v, want image.ErrTooLarge naming max_image_size", tc.max, err)
			}
			if fi.Size() > tc.max {
				t.Errorf("max %d: the file grew to %d", tc.max, fi.Size())
			}
		} else if err != nil || fi.Size() < 8<<20 {
			t.Errorf("max %d: err %v, size %d", tc.max, err, fi.Size())
		}
	}
}
