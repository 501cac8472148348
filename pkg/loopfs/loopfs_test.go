package loopfs

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func requireMount(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loop devices, mount)")
	}
	if _, err := exec.LookPath(Mkfs); err != nil {
		t.Skipf("%q not found in PATH", Mkfs)
	}
}

// A file system made and mounted takes writes up to its size and then
// ENOSPC; the sparse file holds only what was written; once unmounted its
// loop device is gone.
func TestMakeMountFull(t *testing.T) {
	requireMount(t)
	dir := t.TempDir()
	img := filepath.Join(dir, "fs.img")
	const size = 32 << 20
	if err := Make(context.Background(), img, size); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(img)
	if err != nil || fi.Size() != size || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the file: %v %v (want %d bytes, 0600)", fi, err, size)
	}
	if a, _ := Allocated(img); a > 2<<20 {
		t.Errorf("a fresh file system takes %d bytes on disk (want a sparse file)", a)
	}
	mnt := filepath.Join(dir, "mnt")
	os.Mkdir(mnt, 0o700)
	if err := Mount(img, mnt); err != nil {
		t.Fatal(err)
	}
	mounted := true
	defer func() {
		if mounted {
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	}()
	sp, err := SpaceOf(mnt)
	if err != nil || sp.Full() || sp.Size < size*9/10 || sp.Size > size {
		t.Fatalf("fresh: %+v %v", sp, err)
	}
	f, err := os.Create(filepath.Join(mnt, "big"))
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<20)
	var werr error
	written := 0
	for i := 0; i < 64 && werr == nil; i++ {
		var n int
		n, werr = f.Write(buf)
		written += n
	}
	if werr == nil {
		werr = f.Sync()
	}
	f.Close()
	if !errors.Is(werr, unix.ENOSPC) {
		t.Errorf("writing 64 MiB into 32 MiB: %v (want ENOSPC)", werr)
	}
	if written < 24<<20 {
		t.Errorf("only %d bytes written before it was full", written)
	}
	if sp, _ = SpaceOf(mnt); !sp.Full() {
		t.Errorf("after ENOSPC: %+v, not Full", sp)
	}
	if a, _ := Allocated(img); a > size {
		t.Errorf("the file takes %d bytes, more than its size %d", a, size)
	}
	// Another file system beside it is not touched by this one's writes.
	if err := os.Remove(filepath.Join(mnt, "big")); err != nil {
		t.Fatal(err)
	}
	loops := loopsOf(t, img)
	if len(loops) != 1 {
		t.Fatalf("loop devices of the file: %v", loops)
	}
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	mounted = false
	// The device is let go as the unmount's last reference drops, which
	// the kernel may finish a moment later.
	for i := 0; ; i++ {
		l := loopsOf(t, img)
		if len(l) == 0 {
			break
		}
		if i == 100 {
			t.Errorf("loop device left after the unmount: %v", l)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// loopsOf lists the loop devices backed by file.
func loopsOf(t *testing.T, file string) []string {
	t.Helper()
	var out []string
	ms, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, m := range ms {
		if b, err := os.ReadFile(m); err == nil && string(b) == file+"\n" {
			out = append(out, m)
		}
	}
	return out
}

// Make never reuses or follows what is there, and leaves nothing when it
// fails.
func TestMakeRefuses(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old")
	if err := os.WriteFile(old, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "target"), link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{old, link} {
		if err := Make(context.Background(), p, MinSize); err == nil {
			t.Errorf("%s: made over it", p)
		}
	}
	if b, _ := os.ReadFile(old); string(b) != "keep" {
		t.Errorf("an existing file changed: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "target")); err == nil {
		t.Error("made through a symlink")
	}
	if err := Make(context.Background(), filepath.Join(dir, "small"), MinSize-1); err == nil {
		t.Error("made below MinSize")
	}
	saved := Mkfs
	t.Cleanup(func() { Mkfs = saved })
	Mkfs = "/bin/false"
	bad := filepath.Join(dir, "bad")
	if err := Make(context.Background(), bad, MinSize); err == nil {
		t.Error("mkfs failed, Make did not")
	}
	if _, err := os.Lstat(bad); err == nil {
		t.Error("a failed Make left its file")
	}
}

func TestFull(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s    Space
		full bool
	}{
		{Space{Size: 16 << 30, Avail: 1 << 30, FreeInodes: 10}, false},
		{Space{Size: 16 << 30, Avail: 3 << 20, FreeInodes: 10}, true},
		{Space{Size: 64 << 20, Avail: 2 << 20, FreeInodes: 10}, false},
		{Space{Size: 64 << 20, Avail: 512 << 10, FreeInodes: 10}, true},
		{Space{Size: 64 << 20, Avail: 32 << 20, FreeInodes: 0}, true},
	} {
		if got := tc.s.Full(); got != tc.full {
			t.Errorf("%+v: Full %v, want %v", tc.s, got, tc.full)
		}
	}
}
