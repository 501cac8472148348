package main

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

// fakeImages serves one prebuilt squashfs.
type fakeImages struct {
	img    *image
	pinned int
}

func (f *fakeImages) get(ctx context.Context, ref string, cred credential, auth []byte, progress func(string)) (*image, error) {
	if ref != "test" {
		return nil, fmt.Errorf("pull %q: manifest unknown", ref)
	}
	return f.img, nil
}

func (f *fakeImages) pin(digest string) (func(), error) {
	f.pinned++
	return func() { f.pinned-- }, nil
}

// testSquashfs builds a squashfs with busybox and an os-release.
func testSquashfs(t *testing.T) string {
	t.Helper()
	for _, bin := range []string{"mksquashfs", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%q not found in PATH", bin)
		}
	}
	root := t.TempDir()
	for _, d := range []string{"bin", "etc", "work", "tmp"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	bb, _ := exec.LookPath("busybox")
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755)
	os.Symlink("busybox", filepath.Join(root, "bin/sh"))
	os.WriteFile(filepath.Join(root, "etc/os-release"), []byte("ID=phpc-unit\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	sqfs := filepath.Join(t.TempDir(), "img.sqfs")
	if out, err := exec.Command("mksquashfs", root, sqfs, "-noappend", "-quiet", "-comp", "zstd").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	return sqfs
}

func testManager(t *testing.T) (*manager, *fakeImages, string) {
	t.Helper()
	requireRoot(t)
	// The test binary is the containers' init: it must run in any image.
	if self, err := os.Executable(); err == nil {
		if f, err := elf.Open(self); err == nil {
			defer f.Close()
			for _, p := range f.Progs {
				if p.Type == elf.PT_INTERP {
					t.Skip("test binary is dynamically linked; run with CGO_ENABLED=0 (make test does)")
				}
			}
		}
	}
	state := filepath.Join(t.TempDir(), "state")
	os.MkdirAll(state, 0o700)
	rt, err := pickRuntime(context.Background(), Config{StateDir: state, Runtime: "auto"})
	if err != nil {
		t.Skipf("no OCI runtime works here: %v", err)
	}
	images := &fakeImages{img: &image{Digest: "sha256:feed", Path: testSquashfs(t), Env: []string{"FOO=image"}, WorkingDir: "/work"}}
	return newManager(slog.New(slog.NewTextHandler(io.Discard, nil)), rt, images, Config{StateDir: state}), images, state
}

func TestContainerLifecycle(t *testing.T) {
	m, images, state := testManager(t)
	ctx := context.Background()
	req := &containerRequest{Job: "7", Step: "0", UID: 65534, GID: 65534, Image: "test"}
	c, _, err := m.forStep(ctx, req, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.initPid))
	if !strings.Contains(string(status), "\nUid:\t65534\t65534\t65534\t65534\n") {
		t.Errorf("init is not the job user:\n%s", status)
	}
	if strings.Contains(string(status), "CapEff:\t0000003") || !strings.Contains(string(status), "CapEff:\t0000000000000000") {
		t.Errorf("init has capabilities:\n%s", status)
	}
	osr, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/os-release", c.initPid))
	if err != nil || string(osr) != "ID=phpc-unit\n" {
		t.Errorf("image's os-release: %q, %v", osr, err)
	}
	passwd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/passwd", c.initPid))
	if !strings.Contains(string(passwd), "nobody:x:65534:65534:") {
		t.Errorf("passwd lacks the job user:\n%s", passwd)
	}
	if c.workdir != "/work" || len(c.env) != 1 || c.env[0] != "FOO=image" {
		t.Errorf("workdir %q env %q", c.workdir, c.env)
	}
	mi, _ := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", c.initPid))
	if root := strings.SplitN(string(mi), "\n", 2)[0]; !strings.Contains(root, " / / ro,") {
		t.Errorf("root is not read-only: %s", root)
	}
	if images.pinned != 1 {
		t.Errorf("image pinned %d times, want 1", images.pinned)
	}

	m.remove(ctx, c)
	if images.pinned != 0 {
		t.Errorf("image still pinned after remove")
	}
	if mounts, _ := oci.MountsUnder(state); len(mounts) > 0 {
		t.Errorf("mounts left: %q", mounts)
	}
	if _, err := os.Stat(c.bundle); !os.IsNotExist(err) {
		t.Errorf("bundle left: %v", err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", c.initPid)); err == nil {
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.initPid))
		if !strings.Contains(string(st), ") Z ") {
			t.Errorf("init %d still running", c.initPid)
		}
	}
}

func TestContainerFailureLeavesNothing(t *testing.T) {
	m, images, state := testManager(t)
	ctx := context.Background()
	for name, req := range map[string]*containerRequest{
		"unknown image": {Job: "8", Step: "0", UID: 65534, GID: 65534, Image: "nope"},
		"missing mount": {Job: "8", Step: "1", UID: 65534, GID: 65534, Image: "test", Mounts: []userMount{{Src: "/does/not/exist", Dst: "/x"}}},
		"root-only dir": {Job: "8", Step: "2", UID: 65534, GID: 65534, Image: "test", Mounts: []userMount{{Src: "/root/.", Dst: "/x"}}},
	} {
		if _, _, err := m.forStep(ctx, req, func(string) {}); err == nil {
			t.Errorf("%s: create succeeded", name)
		} else if name != "unknown image" && !strings.Contains(err.Error(), "--container-mounts: ") {
			t.Errorf("%s: error %q does not name the option", name, err)
		}
	}
	if images.pinned != 0 {
		t.Errorf("image pinned %d times after failures", images.pinned)
	}
	if mounts, _ := oci.MountsUnder(state); len(mounts) > 0 {
		t.Errorf("mounts left: %q", mounts)
	}
	if entries, _ := os.ReadDir(filepath.Join(state, "containers")); len(entries) > 0 {
		t.Errorf("bundles left: %d", len(entries))
	}
}
