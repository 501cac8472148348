package devices

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/devices/devicestest"
)

func TestDevice(t *testing.T) {
	t.Parallel()
	d, err := Device("/", "/dev/null")
	if err != nil {
		t.Fatal(err)
	}
	if d.Path != "/dev/null" || d.Type != "c" || d.Major != 1 || d.Minor != 3 || *d.FileMode != 0o666 || *d.UID != 0 {
		t.Errorf("/dev/null: %+v", d)
	}
	r := CgroupRule(d)
	if !r.Allow || r.Type != "c" || *r.Major != 1 || *r.Minor != 3 || r.Access != "rwm" {
		t.Errorf("rule %+v", r)
	}
	if _, err := Device(fakeTree(t, "/dev/nvidia0"), "/dev/nvidia0"); !errors.Is(err, ErrNotDevice) {
		t.Errorf("plain file: err = %v", err)
	}
}

// A node made in a fake tree keeps its numbers and mode (root only: mknod).
func TestDeviceMknod(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mknod needs root")
	}
	root := t.TempDir()
	devicestest.Mknod(t, root, "/dev/nvidia3", 195, 3)
	os.Chmod(filepath.Join(root, "dev/nvidia3"), 0o660)
	d, err := Device(root, "/dev/nvidia3")
	if err != nil || d.Major != 195 || d.Minor != 3 || *d.FileMode != 0o660 || d.Type != "c" {
		t.Errorf("got %+v, %v", d, err)
	}
}

func TestLinkerNameAndVersion(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]struct {
		ln string
		v  []int
	}{
		"libmpich.so.12.2.2": {"libmpich.so", []int{12, 2, 2}},
		"libmpi.so.12":       {"libmpi.so", []int{12}},
		"libmpi.so":          {"libmpi.so", nil},
		"libfoo.so.1.x.3":    {"libfoo.so", []int{1}},
		"libsomething.a":     {"libsomething.a", nil},
		"libc.so.6":          {"libc.so", []int{6}},
		"libsolar.so.4":      {"libsolar.so", []int{4}},
	} {
		if ln, v := LinkerName(name), VersionOf(name); ln != want.ln || !reflect.DeepEqual(v, want.v) {
			t.Errorf("%s: %q %v, want %q %v", name, ln, v, want.ln, want.v)
		}
	}
	if s := FormatVersion([]int{12, 2, 2}); s != "12.2.2" {
		t.Errorf("FormatVersion = %q", s)
	}
}

func TestReadLibrary(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	devicestest.Lib(t, root, "/usr/lib", "libmpich.so.12.2.2", "libmpich.so.12")
	// An absolute symlink resolves inside the tree, never on the host.
	os.Symlink("/usr/lib/libmpich.so.12", filepath.Join(root, "usr/lib/libmpi.so.12"))
	l, err := ReadLibrary(root, "/usr/lib/libmpi.so.12")
	want := Library{Path: "/usr/lib/libmpi.so.12", Real: "/usr/lib/libmpich.so.12.2.2", Soname: "libmpich.so.12", Version: []int{12, 2, 2}}
	if err != nil || !reflect.DeepEqual(l, want) {
		t.Errorf("got %+v, %v; want %+v", l, err, want)
	}
	if l.String() != "libmpich.so.12.2.2" {
		t.Errorf("String() = %q", l)
	}
	os.WriteFile(filepath.Join(root, "usr/lib/libnot.so.1"), []byte("not ELF"), 0o644)
	if _, err := ReadLibrary(root, "/usr/lib/libnot.so.1"); err == nil {
		t.Error("a non-ELF file read as a library")
	}
}
