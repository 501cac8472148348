package oci

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Mounts made below a shared directory reach the namespace; what is
// mounted in the namespace stays there; processes started in Do are born
// in it.
func TestMountNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	dir := t.TempDir()
	hidden := filepath.Join(dir, "hidden")
	later := filepath.Join(dir, "later")
	os.Mkdir(hidden, 0o755)
	os.Mkdir(later, 0o755)
	if err := MakeShared(dir); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	ns, err := NewMountNS(func() error { return unix.Mount("tmpfs", hidden, "tmpfs", 0, "") })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	if err := unix.Mount("tmpfs", later, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(later, unix.MNT_DETACH) })

	if own, _ := MountsUnder(dir); strings.Contains(strings.Join(own, " "), hidden) {
		t.Errorf("the namespace's mount leaked out: %q", own)
	}
	var seen, child []byte
	err = ns.Do(func() error {
		var err error
		if seen, err = os.ReadFile("/proc/thread-self/mountinfo"); err != nil {
			return err
		}
		child, err = exec.Command("cat", "/proc/self/mountinfo").Output()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(seen), " "+hidden+" ") || !strings.Contains(string(seen), " "+later+" ") {
		t.Errorf("the namespace's thread lacks %s or %s:\n%s", hidden, later, seen)
	}
	if !strings.Contains(string(child), " "+hidden+" ") {
		t.Errorf("a process started in Do is not in the namespace:\n%s", child)
	}
}

// A nil MountNS runs the work where it is.
func TestMountNSNil(t *testing.T) {
	t.Parallel()
	var ns *MountNS
	called := false
	if err := ns.Do(func() error { called = true; return nil }); err != nil || !called {
		t.Errorf("nil Do: called %v, err %v", called, err)
	}
	ns.Close()
}

// Do after Close fails (a removal a timer runs as the daemon stops), and
// Close twice is harmless.
func TestMountNSDoAfterClose(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (unshare)")
	}
	n, err := NewMountNS(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Do(func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	n.Close()
	n.Close()
	if err := n.Do(func() error { return nil }); !errors.Is(err, errMountNSClosed) {
		t.Errorf("Do after Close: %v", err)
	}
}
