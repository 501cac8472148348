package oci

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// privateNS starts a thread with a private copy of the test's mount
// namespace, runs setup in it, and returns the namespace and a function that
// reads its mountinfo.
func privateNS(t *testing.T, setup func() error) (*os.File, func() string) {
	t.Helper()
	ns, err := NewMountNS(func() error {
		if err := unix.Mount("", "/", "", unix.MS_PRIVATE|unix.MS_REC, ""); err != nil {
			return err
		}
		return setup()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ns.Close)
	var f *os.File
	if err := ns.Do(func() (err error) { f, err = os.Open("/proc/thread-self/ns/mnt"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f, func() string {
		var b []byte
		if err := ns.Do(func() (err error) { b, err = os.ReadFile("/proc/thread-self/mountinfo"); return err }); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
}

// mountOptions maps each mount point of a mountinfo text to its per-mount
// options (the last mount at a point wins: the one on top).
func mountOptions(mountinfo string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(mountinfo, "\n") {
		if f := strings.Fields(line); len(f) > 5 {
			out[unescapeMountinfo(f[4])] = "," + f[5] + ","
		}
	}
	return out
}

// SealRoot makes every mount of the namespace nosuid (a suid tmpfs mounted
// below a directory, as under a user's bind, included) and every one but
// /dev and below nodev; the namespace's device nodes keep working.
func TestSealRootAllMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "bound", "sub dir")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	mntns, mountinfo := privateNS(t, func() error {
		if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "mode=0755"); err != nil {
			return err
		}
		if err := os.Mkdir(filepath.Join(sub, "deeper"), 0o755); err != nil {
			return err
		}
		return unix.Mount("tmpfs", filepath.Join(sub, "deeper"), "tmpfs", 0, "")
	})
	before := mountOptions(mountinfo())
	if strings.Contains(before[sub], ",nosuid,") {
		t.Fatalf("test tmpfs already nosuid: %s", before[sub])
	}
	devBefore := before["/dev"]

	if err := SealRoot(mntns, false); err != nil {
		t.Fatal(err)
	}
	after := mountOptions(mountinfo())
	if len(after) < 3 {
		t.Fatalf("mountinfo after: %v", after)
	}
	for mp, opts := range after {
		if !strings.Contains(opts, ",nosuid,") {
			t.Errorf("%s is not nosuid: %s", mp, opts)
		}
		underDev := mp == "/dev" || strings.HasPrefix(mp, "/dev/")
		if !underDev && !strings.Contains(opts, ",nodev,") {
			t.Errorf("%s is not nodev: %s", mp, opts)
		}
	}
	for _, mp := range []string{sub, filepath.Join(sub, "deeper"), "/"} {
		if _, ok := after[mp]; !ok {
			t.Errorf("%s not in the namespace's mounts", mp)
		}
	}
	if devBefore != "" && strings.Contains(after["/dev"], ",nodev,") != strings.Contains(devBefore, ",nodev,") {
		t.Errorf("/dev's nodev changed: %s -> %s", devBefore, after["/dev"])
	}
	// The root stays writable without readonly.
	if strings.Contains(after["/"], ",ro,") {
		t.Errorf("root read-only without readonly: %s", after["/"])
	}
}

// With readonly the root is read-only too.
func TestSealRootReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	dir := t.TempDir()
	mntns, mountinfo := privateNS(t, func() error { return unix.Mount("tmpfs", dir, "tmpfs", 0, "") })
	if err := SealRoot(mntns, true); err != nil {
		t.Fatal(err)
	}
	after := mountOptions(mountinfo())
	if opts := after["/"]; !strings.Contains(opts, ",ro,") || !strings.Contains(opts, ",nosuid,") || !strings.Contains(opts, ",nodev,") {
		t.Errorf("root: %s, want ro,nosuid,nodev", opts)
	}
	if opts := after[dir]; strings.Contains(opts, ",ro,") || !strings.Contains(opts, ",nodev,") {
		t.Errorf("%s: %s, want rw (only the root is read-only), nodev", dir, opts)
	}
}

func TestMountPointsUnescapesAndDedups(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mountinfo")
	data := "1 0 0:1 / / rw - ext4 x rw\n2 1 0:2 / /a\\040b rw - tmpfs t rw\n3 2 0:3 / /a\\040b rw - tmpfs t rw\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := mountPoints(f)
	if err != nil || strings.Join(got, "|") != "/|/a b" {
		t.Errorf("mountPoints = %q, %v", got, err)
	}
}
