package store

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/imagetest"
)

// tarDir writes the regular files under dir as a tar file (a fixture).
func tarDir(t *testing.T, dir, out string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || !fi.Mode().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: rel, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

// writeDockerArchive writes im in `docker save` format, tagged name.
func writeDockerArchive(t *testing.T, im *testImage, name, out string) {
	t.Helper()
	dir := t.TempDir()
	cfgName := digest.FromBytes(im.config).Encoded() + ".json"
	if err := os.WriteFile(filepath.Join(dir, cfgName), im.config, 0o644); err != nil {
		t.Fatal(err)
	}
	var layers []string
	for _, l := range im.plain {
		p := digest.FromBytes(l).Encoded() + "/layer.tar"
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), l, 0o644); err != nil {
			t.Fatal(err)
		}
		layers = append(layers, p)
	}
	m, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{name}, "Layers": layers}})
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), m, 0o644); err != nil {
		t.Fatal(err)
	}
	tarDir(t, dir, out)
}

func publicDir(t *testing.T, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "squash-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestGetLocalImages(t *testing.T) {
	c := openTestCache(t, nil, nil)
	im := newTestImage(t, baseConfig, baseLayers()...)
	for _, mode := range []os.FileMode{0o755, 0o700} {
		dir := publicDir(t, mode)
		layout := filepath.Join(dir, "layout")
		im.writeLayout(t, layout, "v1")
		tarDir(t, layout, filepath.Join(dir, "oci.tar"))
		writeDockerArchive(t, im, "example.org/app:1", filepath.Join(dir, "docker.tar"))
		for _, ref := range []string{
			"oci:" + layout + ":v1",
			"oci-archive:" + filepath.Join(dir, "oci.tar") + ":v1",
			"docker-archive:" + filepath.Join(dir, "docker.tar"),
		} {
			t.Run(strings.SplitN(ref, ":", 2)[0]+mode.String(), func(t *testing.T) {
				img, err := c.Get(context.Background(), ref, PullOptions{UID: nobody, GID: nobody})
				if mode == 0o700 {
					// root's directory: nobody may not read it, so neither
					// may the daemon on nobody's behalf.
					if !errors.Is(err, image.ErrPermission) {
						t.Fatalf("%v; want image.ErrPermission", err)
					}
					assertOneLine(t, err, ref, "permission denied")
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				list := listing(t, img.Path)
				if !strings.Contains(list, "/opt/new") || strings.Contains(list, "/opt/old") {
					t.Errorf("%s: wrong content:\n%s", ref, list)
				}
				if img.Config.WorkingDir != "/opt" {
					t.Errorf("config %+v", img.Config)
				}
			})
		}
	}
	c.wait()
	if ents, _ := os.ReadDir(c.tmp); len(ents) != 0 {
		t.Errorf("tmp holds %s", ents[0].Name())
	}
}

// An OCI layout is read by the user's own helper, which they may pause
// and let run now and then: helper_timeout bounds the whole read.
func TestGetLayoutBoundedByHelperTimeout(t *testing.T) {
	c := openTestCache(t, nil, func(o *Options) { o.HelperTimeout = time.Millisecond })
	im := newTestImage(t, baseConfig, baseLayers()...)
	layout := filepath.Join(publicDir(t, 0o755), "layout")
	im.writeLayout(t, layout, "v1")
	ref := "oci:" + layout + ":v1"
	_, err := c.Get(context.Background(), ref, PullOptions{UID: nobody, GID: nobody})
	if !errors.Is(err, image.ErrHelperTimeout) {
		t.Fatalf("%v; want image.ErrHelperTimeout", err)
	}
	assertOneLine(t, err, ref, "reading the OCI layout as uid", "helper_timeout")
	c.wait()
	if ents, _ := os.ReadDir(c.tmp); len(ents) != 0 {
		t.Errorf("tmp holds %s", ents[0].Name())
	}
}

// TestGetProjectImage squashes the project's 4-layer MPI test image (its
// top layer has whiteouts) and checks the result by mounting it.
func TestGetProjectImage(t *testing.T) {
	const layout = "/work/main/build/images/mpi"
	if _, err := os.Stat(layout + "/index.json"); err != nil {
		t.Skipf("%s not built (test/images/build.sh)", layout)
	}
	c := openTestCache(t, nil, func(o *Options) { o.Compression = "" })
	img, err := c.Get(context.Background(), "oci:"+layout+":latest", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if out, err := imagetest.RunCmd("mount", "-t", "squashfs", "-o", "loop,ro,nosuid,nodev", img.Path, mnt); err != nil {
		t.Skipf("cannot loop-mount: %v: %s", err, out)
	}
	t.Cleanup(func() { _, _ = imagetest.RunCmd("umount", mnt) })
	for _, p := range []string{"usr/local/bin/ring", "usr/local/bin/ring-mpich", "usr/bin/mpirun", "bin/bash"} {
		if _, err := os.Stat(filepath.Join(mnt, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(mnt, "usr/share/doc")); len(ents) != 0 {
		t.Errorf("usr/share/doc has %d entries; the top layer's whiteouts removed them", len(ents))
	}
	if _, err := os.Lstat(filepath.Join(mnt, "usr/sbin/policy-rc.d")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("policy-rc.d survived its whiteout: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(mnt, "usr/bin/su")); err != nil || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("su: %v %v; want setuid kept", fi, err)
	}
	if img.Config.Cmd == nil || img.Config.Cmd[0] != "/bin/bash" {
		t.Errorf("config %+v", img.Config)
	}
}

// TestGetHostileArchives: local archives are parsed by containers/image
// as root, so what they may contain is checked first, and no blob may be
// longer than its manifest entry.
func TestGetHostileArchives(t *testing.T) {
	c := openTestCache(t, nil, nil)
	im := newTestImage(t, baseConfig, baseLayers()...)
	dir := t.TempDir()
	layout := filepath.Join(dir, "layout")
	im.writeLayout(t, layout, "v1")
	// The first layer's blob is /dev/zero: endless.
	blob := filepath.Join(layout, "blobs", "sha256", digestOf(im.layers[0]).Encoded())
	if err := os.Remove(blob); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/dev/zero", blob); err != nil {
		t.Fatal(err)
	}
	tarball := filepath.Join(dir, "device.tar")
	f, err := os.Create(tarball)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, h := range []*tar.Header{
		{Name: "oci-layout", Typeflag: tar.TypeReg, Size: 2, Mode: 0o644},
		{Name: "blobs/sha256/" + digestOf(im.layers[0]).Encoded(), Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 5, Mode: 0o644},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("{}"))
		}
	}
	tw.Close()
	f.Close()
	cases := []struct {
		ref  string
		is   error
		want string
	}{
		// The layout helper sends regular files only: /dev/zero is skipped
		// and the layer is then missing.
		{"oci:" + layout + ":v1", nil, digestOf(im.layers[0]).Encoded()},
		{"oci-archive:" + tarball, image.ErrBadReference, "is not a regular file or directory"},
	}
	for _, tc := range cases {
		_, err := c.Get(context.Background(), tc.ref, PullOptions{})
		if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.ref, err, tc.want)
			continue
		}
		assertOneLine(t, err, tc.ref)
	}
	assertClean(t, c)
}
