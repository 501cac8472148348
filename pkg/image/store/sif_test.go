package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/apptainer/sif/v2/pkg/sif"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
	"github.com/podman-hpc/podman-hpc/pkg/image/sif/siftest"
	"github.com/podman-hpc/podman-hpc/pkg/image/squashfs"
)

// sifOf writes a SIF of objs into a directory everyone may enter, with
// mode, and returns its path.
func sifOf(t *testing.T, mode os.FileMode, objs ...siftest.Object) string {
	t.Helper()
	dir := publicDir(t, 0o755)
	p := filepath.Join(dir, "app.sif")
	if err := siftest.Write(p, objs...); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func sqfsRoot(t *testing.T, sqfs string) siftest.Object {
	t.Helper()
	b, err := os.ReadFile(sqfs)
	if err != nil {
		t.Fatal(err)
	}
	return siftest.Root(sif.FsSquash, bytes.NewReader(b))
}

// An Apptainer image: the root partition of a SIF holding the definition
// file, labels and a data partition besides is copied into the cache as
// a squashfs of its own, keyed by its sha256 in a space of its own, and
// marked as Apptainer's.
func TestGetSIFFile(t *testing.T) {
	c := openTestCache(t, nil, nil)
	sqfs := imagetest.MakeSquashfs(t, map[string]string{"etc/os-release": "ID=sif\n",
		".singularity.d/env/90-environment.sh": "export FROM_SIF=1\n", ".singularity.d/labels.json": "{}"})
	want, _ := os.ReadFile(sqfs)
	sum := sha256.Sum256(want)
	p := sifOf(t, 0o644, siftest.Deffile("Bootstrap: docker\n"), siftest.Labels(`{"a":"b"}`), sqfsRoot(t, sqfs),
		siftest.Object{Type: sif.DataPartition, Data: strings.NewReader("data"), FS: sif.FsRaw, Part: sif.PartData})
	img, err := c.Get(context.Background(), p, PullOptions{UID: nobody, GID: nobody})
	if err != nil {
		t.Fatal(err)
	}
	if wantD := "sif:sha256:" + hex.EncodeToString(sum[:]); img.Digest != wantD {
		t.Errorf("Digest %s, want %s", img.Digest, wantD)
	}
	if !img.Config.Apptainer {
		t.Error("not marked as Apptainer's")
	}
	got, err := os.ReadFile(img.Path)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the cached file is not the root partition (%d bytes, want %d): %v", len(got), len(want), err)
	}
	if l := listing(t, img.Path); !strings.Contains(l, "/.singularity.d/env/90-environment.sh") {
		t.Errorf("listing:\n%s", l)
	}
	// The same squashfs as a file of its own: another image, not
	// Apptainer's.
	plain, err := c.Get(context.Background(), publicCopy(t, sqfs, 0o644), PullOptions{UID: nobody, GID: nobody})
	if err != nil {
		t.Fatal(err)
	}
	if plain.Digest == img.Digest || plain.Config.Apptainer {
		t.Errorf("the squashfs file is %s (apptainer %t), the SIF %s", plain.Digest, plain.Config.Apptainer, img.Digest)
	}
	// Removable by its digest.
	if err := c.Remove(img.Digest, 0); err != nil {
		t.Errorf("Remove(%s): %v", img.Digest, err)
	}
}

// What a SIF may not be, as a user sees it: each fails at once with the
// reason, and leaves nothing in the cache.
func TestGetSIFRefused(t *testing.T) {
	c := openTestCache(t, nil, nil)
	dev := makeSquashfsWith(t, map[string]sqfsEntry{"a": {}}, "-p", "dev d 755 0 0", "-p", "dev/sda b 660 0 0 8 0")
	good := sifOf(t, 0o644, siftest.Deffile("x"), sqfsRoot(t, imagetest.MakeSquashfs(t, map[string]string{"a": "b"})))
	b, _ := os.ReadFile(good)
	// The root's descriptor is the second; its Offset at +17, Size at +25.
	d := int(binary.LittleEndian.Uint64(b[96:])) + int(binary.LittleEndian.Uint64(b[104:])/binary.LittleEndian.Uint64(b[88:]))
	patched := func(at int, v int64) string {
		p := filepath.Join(publicDir(t, 0o755), "patched.sif")
		bb := bytes.Clone(b)
		binary.LittleEndian.PutUint64(bb[at:], uint64(v))
		if err := os.WriteFile(p, bb, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		path string
		is   error
		want string
	}{
		{"ext3 root", sifOf(t, 0o644, siftest.Root(sif.FsExt3, strings.NewReader("ext3"))), image.ErrUnsupported, "ext3, not squashfs"},
		{"overlay only", sifOf(t, 0o644, siftest.Overlay(strings.NewReader("ext3"))), image.ErrUnsupported, "only an overlay"},
		{"encrypted", sifOf(t, 0o644, siftest.Root(sif.FsEncryptedSquashfs, strings.NewReader("x"))), image.ErrUnsupported, "encrypted"},
		{"device node in the root", sifOf(t, 0o644, sqfsRoot(t, dev)), image.ErrUnsafeFile, "/dev/sda is a device node"},
		{"root not squashfs", sifOf(t, 0o644, siftest.Root(sif.FsSquash, strings.NewReader("not a file system"))), image.ErrNotSquashfs, "superblock"},
		{"root beyond the end", patched(d+17, int64(len(b))), image.ErrNotSquashfs, "outside the file"},
		{"huge root", patched(d+25, 1<<62), image.ErrNotSquashfs, "outside the file"},
		{"huge descriptor count", patched(88, 1<<50), image.ErrNotSquashfs, "declares"},
		{"cut short", func() string {
			p := filepath.Join(publicDir(t, 0o755), "short.sif")
			os.WriteFile(p, b[:len(b)-100], 0o644)
			return p
		}(), image.ErrNotSquashfs, "outside the file"},
		{"root's only", sifOf(t, 0o600, sqfsRoot(t, imagetest.MakeSquashfs(t, map[string]string{"a": "b"}))), image.ErrPermission, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Get(context.Background(), tc.path, PullOptions{UID: nobody, GID: nobody})
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			assertOneLine(t, err, tc.path, tc.want)
		})
	}
	assertClean(t, c)
	// A symlink to root's SIF, and a FIFO, named by the user.
	dir := publicDir(t, 0o777)
	link := filepath.Join(dir, "link.sif")
	if err := os.Symlink(sifOf(t, 0o600, sqfsRoot(t, imagetest.MakeSquashfs(t, map[string]string{"a": "b"}))), link); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), link, PullOptions{UID: nobody, GID: nobody}); !errors.Is(err, image.ErrPermission) {
		t.Errorf("symlink to root's SIF: %v", err)
	}
	fifo := filepath.Join(dir, "fifo.sif")
	if err := syscall.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), fifo, PullOptions{UID: nobody, GID: nobody}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO: %v", err)
	}
	// A root partition larger than max_image_size.
	small := openTestCache(t, nil, func(o *Options) { o.MaxImageSize = 1000 })
	if _, err := small.Get(context.Background(), good, PullOptions{UID: nobody, GID: nobody}); !errors.Is(err, image.ErrTooLarge) {
		t.Errorf("larger than max_image_size: %v", err)
	}
}

// A SIF its owner rewrites in place while the daemon reads it (a good
// root, then one with a device node, over and over): every image handed
// out is one the checks passed, never a mix that escaped them.
func TestGetSIFRewritten(t *testing.T) {
	c := openTestCache(t, nil, nil)
	dir := publicDir(t, 0o755)
	var versions [][]byte
	for i, files := range []map[string]sqfsEntry{{"a": {}}, {"b": {}}} {
		extra := []string{"-p", "dev d 755 0 0"}
		if i == 1 {
			extra = append(extra, "-p", "dev/sda b 660 0 0 8 0")
		}
		p := filepath.Join(dir, "v.sif")
		b, _ := os.ReadFile(makeSquashfsWith(t, files, extra...))
		if err := siftest.Write(p, siftest.Root(sif.FsSquash, bytes.NewReader(b))); err != nil {
			t.Fatal(err)
		}
		v, _ := os.ReadFile(p)
		versions = append(versions, v)
	}
	p := filepath.Join(dir, "app.sif")
	if err := os.WriteFile(p, versions[0], 0o644); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Error(err)
				return
			}
			v := versions[i%2]
			for off := 0; off < len(v); off += 512 { // in pieces: readers see mixes
				f.WriteAt(v[off:min(off+512, len(v))], int64(off))
			}
			f.Close()
		}
	}()
	handed := 0
	for range 20 {
		img, err := c.Get(context.Background(), p, PullOptions{UID: nobody, GID: nobody})
		if err != nil {
			continue
		}
		handed++
		if err := squashfs.Check(context.Background(), c.unsquashfs, img.Path); err != nil {
			t.Errorf("handed out an image the checks refuse: %v", err)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d of 20 reads handed out an image", handed)
}
