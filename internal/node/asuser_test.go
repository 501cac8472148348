package node

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// As the user, a file under someone else's 0700 directory is out of reach,
// while a 0600 file of someone else in a searchable directory is reachable
// (its own mode applies later, to whoever reads it), as for pyxis's mounts.
func TestOpenAsUser(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755) // t.TempDir's parent is 0700
	os.Chmod(dir, 0o755)
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o700)
	os.WriteFile(filepath.Join(private, "f"), []byte("x"), 0o644)
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("x"), 0o600)

	user := credential{UID: 65534, GID: 65534}
	_, err := openAsUser(user, []string{filepath.Join(private, "f")})
	if !errors.Is(err, fs.ErrPermission) {
		t.Errorf("file under a 0700 root dir: err = %v, want permission denied", err)
	}
	files, err := openAsUser(user, []string{secret, dir})
	if err != nil {
		t.Fatalf("searchable path: %v", err)
	}
	for _, f := range files {
		f.Close()
	}
	if _, err := openAsUser(user, []string{filepath.Join(dir, "missing")}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing path: err = %v", err)
	}
	// The daemon's other threads keep root's view.
	if _, err := os.Stat(filepath.Join(private, "f")); err != nil {
		t.Errorf("root lost access after openAsUser: %v", err)
	}
	files, err = openAsUser(credential{UID: 0, GID: 0}, []string{filepath.Join(private, "f")})
	if err != nil {
		t.Errorf("root: %v", err)
	}
	for _, f := range files {
		f.Close()
	}
}
