package oci

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// privateNS starts a thread with a private copy of the test's mount
// namespace, runs setup in it, and returns the namespace, a function that
// reads its mountinfo, and the thread.
func privateNS(t *testing.T, setup func() error) (*os.File, func() string, *MountNS) {
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
	}, ns
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

// byID maps each mount's id of a mountinfo text to its point and per-mount
// options, and each point to the id of the mount on top there (the last).
func byID(mountinfo string) (map[string][2]string, map[string]string) {
	out, top := map[string][2]string{}, map[string]string{}
	for _, line := range strings.Split(mountinfo, "\n") {
		if f := strings.Fields(line); len(f) > 5 {
			out[f[0]] = [2]string{unescapeMountinfo(f[4]), "," + f[5] + ","}
			top[unescapeMountinfo(f[4])] = f[0]
		}
	}
	return out, top
}

// SealRoot makes every mount of the namespace nosuid (a suid tmpfs mounted
// below a directory, as under a user's bind, and one hidden under another,
// included) and every one but /dev and below nodev; /dev's mounts keep
// their device nodes.
func TestSealRootAllMounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	dir := t.TempDir()
	sub := filepath.Join(dir, "bound", "sub dir")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	mntns, mountinfo, ns := privateNS(t, func() error {
		// Twice: the first is hidden under the second, as runtimes
		// stack binds.
		for i := 0; i < 2; i++ {
			if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "mode=0755"); err != nil {
				return err
			}
		}
		if err := os.Mkdir(filepath.Join(sub, "deeper"), 0o755); err != nil {
			return err
		}
		return unix.Mount("tmpfs", filepath.Join(sub, "deeper"), "tmpfs", 0, "")
	})
	before, _ := byID(mountinfo())
	if strings.Contains(mountOptions(mountinfo())[sub], ",nosuid,") {
		t.Fatalf("test tmpfs already nosuid")
	}

	if err := SealRoot(mntns, false); err != nil {
		t.Fatal(err)
	}
	after, top := byID(mountinfo())
	if len(after) != len(before) {
		t.Fatalf("%d mounts before, %d after", len(before), len(after))
	}
	subs := 0
	for id, m := range after {
		mp, opts := m[0], m[1]
		if mp == sub {
			subs++
		}
		if !strings.Contains(opts, ",nosuid,") {
			t.Errorf("%s (%s) is not nosuid: %s", mp, id, opts)
		}
		if mp == "/dev" || strings.HasPrefix(mp, "/dev/") {
			// A /dev mount hidden under another may get nodev: no
			// task reaches it.
			if had := strings.Contains(before[id][1], ",nodev,"); top[mp] == id && strings.Contains(opts, ",nodev,") != had {
				t.Errorf("%s (%s): nodev changed: %s -> %s", mp, id, before[id][1], opts)
			}
		} else if !strings.Contains(opts, ",nodev,") {
			t.Errorf("%s (%s) is not nodev: %s", mp, id, opts)
		}
	}
	if subs != 2 {
		t.Errorf("%d mounts at %s, want 2", subs, sub)
	}
	// The namespace's device nodes work.
	if err := ns.Do(func() error {
		f, err := os.OpenFile("/dev/null", os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		return err
	}); err != nil {
		t.Errorf("/dev/null in the sealed namespace: %v", err)
	}
	// The root stays writable without readonly.
	if strings.Contains(mountOptions(mountinfo())["/"], ",ro,") {
		t.Errorf("root read-only without readonly")
	}
}

// With readonly the root is read-only too.
func TestSealRootReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (mounts)")
	}
	dir := t.TempDir()
	mntns, mountinfo, _ := privateNS(t, func() error { return unix.Mount("tmpfs", dir, "tmpfs", 0, "") })
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

func TestReadMountinfo(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mountinfo")
	data := "1 0 0:1 / / rw,nodev - ext4 x rw\n22 1 0:2 / /a\\040b rw - tmpfs t rw\n"
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readMountinfo(f)
	want := []mountEntry{{1, "/", []string{"rw", "nodev"}}, {22, "/a b", []string{"rw"}}}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("readMountinfo = %+v, %v; want %+v", got, err, want)
	}
}
