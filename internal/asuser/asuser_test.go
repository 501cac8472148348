package asuser

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const nobody = 65534

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (it becomes another user)")
	}
}

// The work runs as the user entirely: ids, groups, no capabilities.
func TestDoIsTheUser(t *testing.T) {
	requireRoot(t)
	var status string
	err := Do(Credential{UID: nobody, GID: nobody, Groups: []uint32{12345}}, func() error {
		b, err := os.ReadFile("/proc/thread-self/status")
		status = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "Gid:\t65534\t65534\t65534\t65534", "Groups:\t12345", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
	// And the daemon's other threads are still root.
	if os.Geteuid() != 0 {
		t.Fatal("the caller lost root")
	}
}

// A directory the user may not pass keeps its files out of reach; what
// the user may reach opens, and the descriptor is usable by root after.
func TestOpenWithTheUsersPermissions(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o700)
	os.WriteFile(filepath.Join(private, "secret"), []byte("s"), 0o644)
	os.WriteFile(filepath.Join(dir, "open"), []byte("o"), 0o644)
	nob := Credential{UID: nobody, GID: nobody}
	_, err := Open(nob, []string{filepath.Join(dir, "open"), filepath.Join(private, "secret")}, unix.O_RDONLY, 0)
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Path != filepath.Join(private, "secret") || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("got %v, want permission denied on the secret", err)
	}
	files, err := Open(nob, []string{filepath.Join(dir, "open")}, unix.O_PATH, 0)
	if err != nil || len(files) != 1 {
		t.Fatalf("open: %v", err)
	}
	defer files[0].Close()
	if fi, err := files[0].Stat(); err != nil || fi.Size() != 1 {
		t.Errorf("stat of the opened file: %v %v", fi, err)
	}
	if _, err := Open(nob, []string{filepath.Join(dir, "missing")}, unix.O_PATH, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing path: %v, want not found", err)
	}
	// The daemon's other threads keep root's view, and root may open it all.
	if _, err := os.Stat(filepath.Join(private, "secret")); err != nil {
		t.Errorf("root lost access: %v", err)
	}
	if f, err := Open(Credential{}, []string{filepath.Join(private, "secret")}, unix.O_RDONLY, 0); err != nil {
		t.Errorf("as root: %v", err)
	} else {
		f[0].Close()
	}
	// Created as the user: theirs.
	made := filepath.Join(dir, "made")
	os.Chmod(dir, 0o777)
	f, err := Open(nob, []string{made}, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f[0].Close()
	var st unix.Stat_t
	if err := unix.Stat(made, &st); err != nil || st.Uid != nobody || st.Gid != nobody {
		t.Errorf("created file owned by %d:%d, want nobody's", st.Uid, st.Gid)
	}
}

// Without the right to become the user, the work does not run.
func TestDoRefusesWhenItCannotBecomeTheUser(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may become any user")
	}
	ran := false
	err := Do(Credential{UID: 0, GID: 0}, func() error { ran = true; return nil })
	if err == nil || ran {
		t.Errorf("ran as root from a user: err %v, ran %v", err, ran)
	}
}
