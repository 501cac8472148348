package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/loopfs"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

func requireMkfs(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath(loopfs.Mkfs); err != nil {
		t.Skipf("%q not found in PATH", loopfs.Mkfs)
	}
}

// fill writes into the container's root, through its init's view, until
// the file system refuses; it returns the error that stopped it.
func fill(c *container, name string, max int) error {
	f, err := os.Create(fmt.Sprintf("/proc/%d/root/%s", c.initPid, name))
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	for i := 0; i < max; i++ {
		if _, err := f.Write(buf); err != nil {
			return err
		}
	}
	return f.Sync()
}

// A writable container's writes go to its own file system in writable_dir,
// not to state_dir; past writable_size they get ENOSPC, the step's note
// says so, and state_dir's file system took none of it. Its file and mount
// go with it.
func TestWritableLayerBounded(t *testing.T) {
	requireMkfs(t)
	m, _, state := testManager(t)
	ctx := context.Background()
	req := &wire.ContainerRequest{Job: "9", Step: "0", UID: 4242, GID: 4242, Account: testAccount, Image: "test", Writable: true}
	c, _, err := m.forStep(ctx, req, stepcgroup.Target{}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	defer m.remove(ctx, c)
	if c.layer != m.writes.fileFor(c.bundle) {
		t.Fatalf("layer %q, want it in writable_dir", c.layer)
	}
	if layerNote(c, m.writes.size) != "" {
		t.Error("a fresh layer is full")
	}
	if err := fill(c, "big", 64); !errors.Is(err, unix.ENOSPC) {
		t.Errorf("64 MiB into a 32 MiB layer: %v, want ENOSPC", err)
	}
	// The writes are in the layer's file system, none in the bundle.
	if _, err := os.Lstat(filepath.Join(c.bundle, layerDir, "upper", "big")); err != nil {
		t.Errorf("the write is not in the layer: %v", err)
	}
	if _, err := os.Lstat(c.private("upper")); err == nil {
		t.Error("an upper layer in the bundle (state_dir)")
	}
	if a, _ := loopfs.Allocated(c.layer); a < 16<<20 || a > 32<<20 {
		t.Errorf("the layer's file holds %d bytes, want the writes, at most its size", a)
	}
	note := layerNote(c, m.writes.size)
	if !strings.Contains(note, "writable root on") || !strings.Contains(note, "is full (32M, the node's writable_size)") || !strings.Contains(note, "No space left on device") {
		t.Errorf("note: %q", note)
	}
	layer := c.layer
	m.remove(ctx, c)
	if _, err := os.Lstat(layer); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the layer's file is left: %v", err)
	}
	if mounts := mountsBelow(state); len(mounts) > 0 {
		t.Errorf("mounts left: %q", mounts)
	}
	if len(m.writes.held) != 0 {
		t.Errorf("reservations left: %v", m.writes.held)
	}
	// A read-only container has no layer there.
	req = &wire.ContainerRequest{Job: "9", Step: "1", UID: 4242, GID: 4242, Account: testAccount, Image: "test"}
	ro, _, err := m.forStep(ctx, req, stepcgroup.Target{}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	defer m.remove(ctx, ro)
	if e, _ := os.ReadDir(m.writes.dir); ro.layer != "" || len(e) != 0 {
		t.Errorf("a read-only container: layer %q, writable_dir %v", ro.layer, e)
	}
}

// A user's writable containers, named ones included, reserve at most
// writable_max_per_user: one more is refused with the bound, theirs and how
// to free it; another user is not affected; once one goes, it fits.
func TestWritablePerUserBound(t *testing.T) {
	requireMkfs(t)
	m, _, state := testManager(t) // 32M each, 80M a user: two
	ctx := context.Background()
	mk := func(uid uint32, job, step, name string) (*container, error) {
		acct := *testAccount
		acct.Groups = []wire.Group{{GID: uid}}
		req := &wire.ContainerRequest{Job: job, Step: step, UID: uid, GID: uid, Account: &acct, Image: "test", Writable: true, Name: name, NameMode: "auto", Scope: "job"}
		c, _, err := m.forStep(ctx, req, stepcgroup.Target{}, func(string) {})
		return c, err
	}
	a, err := mk(4242, "20", "0", "")
	if err != nil {
		t.Fatal(err)
	}
	defer m.remove(ctx, a)
	b, err := mk(4242, "21", "0", "tools")
	if err != nil {
		t.Fatal(err)
	}
	defer m.remove(ctx, b)
	_, err = mk(4242, "22", "0", "")
	var oe *wire.OptionError
	if !errors.As(err, &oe) || oe.Option != "--container-writable" {
		t.Fatalf("third: %v, want an error about --container-writable", err)
	}
	for _, want := range []string{"hold 64M, and a new one takes 32M: more than the 80M a user may have there (writable_max_per_user)",
		"scancel JOBID", "podman-hpcd rm --name NAME", "Yours: job 20 step 0, tools (job 21)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q lacks %q", err, want)
		}
	}
	if e, _ := os.ReadDir(filepath.Join(state, "containers")); len(e) != 2 {
		t.Errorf("bundles after the refusal: %d, want 2", len(e))
	}
	if e, _ := os.ReadDir(m.writes.dir); len(e) != 2 {
		t.Errorf("writable_dir after the refusal: %v", e)
	}
	other, err := mk(4343, "23", "0", "")
	if err != nil {
		t.Fatalf("another user: %v", err)
	}
	m.remove(ctx, other)
	m.remove(ctx, a)
	c, err := mk(4242, "22", "0", "")
	if err != nil {
		t.Fatalf("after one went: %v", err)
	}
	m.remove(ctx, c)
}

// A disk that cannot hold one more container whole, beside what the others
// may still write, refuses it: sizes are never overcommitted.
func TestWritableDiskBound(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=40m,mode=0700"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	w := &writeSpace{dir: dir, size: 32 << 20, held: map[string]reservation{}}
	if err := w.reserve(filepath.Join(dir, "a"), 1); err != nil {
		t.Fatal(err)
	}
	err := w.reserve(filepath.Join(dir, "b"), 2)
	var be *boundError
	if !errors.As(err, &be) || !errors.Is(err, errDiskBound) || be.disk > 8<<20 {
		t.Errorf("a second 32M on a 40M disk: %v", err)
	}
	w.release(filepath.Join(dir, "a"))
	if err := w.reserve(filepath.Join(dir, "b"), 2); err != nil {
		t.Errorf("after the first went: %v", err)
	}
}

// A restarted daemon's cleanStale removes the layers of the containers it
// did not adopt, and keeps the adopted ones'.
func TestWritableCleanStale(t *testing.T) {
	dir := t.TempDir()
	w := &writeSpace{dir: dir, size: 32 << 20, held: map[string]reservation{}}
	for _, n := range []string{"a.ext4", "b.ext4", "preflight-1"} {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600)
	}
	w.adopt(filepath.Join(dir, "a.ext4"), 7)
	if n := w.cleanStale(); n != 2 {
		t.Errorf("removed %d, want 2", n)
	}
	if e, _ := os.ReadDir(dir); len(e) != 1 || e[0].Name() != "a.ext4" {
		t.Errorf("left: %v", e)
	}
	if r := w.held[filepath.Join(dir, "a.ext4")]; r.uid != 7 || r.size != 1 {
		t.Errorf("adopted reservation %+v", r)
	}
}

// A writable container's file system that something still holds when the
// container goes (a descriptor of its root a task handed out) still counts
// for its user: their next writable container past the bound is refused
// until the holder lets go; then its file goes.
func TestWritableLayerHeldPastItsContainer(t *testing.T) {
	requireMkfs(t)
	m, _, _ := testManager(t)
	m.writes.perUser = m.writes.size // one container's worth
	ctx := context.Background()
	req := &wire.ContainerRequest{Job: "9", Step: "0", UID: 4242, GID: 4242, Account: testAccount, Image: "test", Writable: true}
	c, _, err := m.forStep(ctx, req, stepcgroup.Target{}, func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	// The holder: a mount of the layer's file system elsewhere.
	hold := t.TempDir()
	if err := unix.Mount(c.layerDir, hold, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	file := c.layer
	m.remove(ctx, c)
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the held layer's file went with its container: %v", err)
	}
	req2 := *req
	req2.Step = "1"
	if _, _, err := m.forStep(ctx, &req2, stepcgroup.Target{}, func(string) {}); err == nil || !strings.Contains(err.Error(), "writable_max_per_user") ||
		!strings.Contains(err.Error(), "1 of ended containers, whose file systems a process of yours still holds open") {
		t.Errorf("a second writable container past the bound while the first's file system is held: %v", err)
	}
	if err := unix.Unmount(hold, 0); err != nil {
		t.Fatal(err)
	}
	m.writes.sweepLater()
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			break
		}
		time.Sleep(10 * time.Millisecond)
		m.writes.sweepLater()
	}
	if _, err := os.Stat(file); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the layer's file stayed once nothing held it: %v", err)
	}
	c2, _, err := m.forStep(ctx, &req2, stepcgroup.Target{}, func(string) {})
	if err != nil {
		t.Fatalf("once it went: %v", err)
	}
	m.remove(ctx, c2)
}
