package oci

import (
	"os"
	"runtime"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// MountsUnder reads the calling thread's mount table: a thread in a mount
// namespace of its own (as the main thread stays after a sandbox's
// goroutine exited on it) sees its mounts, the others theirs.
func TestMountsUnderIsTheThreads(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	dir := t.TempDir()
	type seen struct {
		mounts []string
		err    error
	}
	done := make(chan seen)
	go func() {
		// Never unlocked: the thread ends with the goroutine, and its
		// namespace with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- seen{err: err}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- seen{err: err}
			return
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
			done <- seen{err: err}
			return
		}
		m, err := MountsUnder(dir)
		done <- seen{m, err}
	}()
	in := <-done
	if in.err != nil {
		t.Fatal(in.err)
	}
	if !slices.Contains(in.mounts, dir) {
		t.Errorf("the thread that mounted %s does not see it: %v", dir, in.mounts)
	}
	out, err := MountsUnder(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Errorf("another thread sees the namespace's mount: %v", out)
	}
}
