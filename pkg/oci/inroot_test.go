package oci

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMakeMountpoint(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	outside := t.TempDir()
	// An image's symlinks: one inside, two pointing out of the root.
	os.Mkdir(filepath.Join(root, "data"), 0o755)
	os.Symlink("/data", filepath.Join(root, "lnk"))
	os.Symlink(outside, filepath.Join(root, "abs"))
	os.Symlink("../../../../"+outside, filepath.Join(root, "rel"))
	os.WriteFile(filepath.Join(root, "existing"), []byte("keep"), 0o644)

	for _, tc := range []struct {
		dst     string
		file    bool
		wantErr bool
	}{
		{"/a/b/c", false, false},
		{"/a/f", true, false},
		{"/lnk/x", false, false},
		{"/existing", true, false},
		{"/", false, false},
		// Resolved inside the root, where the target does not exist.
		{"/abs/x", false, true},
		{"/rel/y", true, true},
	} {
		err := MakeMountpoint(root, tc.dst, tc.file)
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: err = %v, want error %v", tc.dst, err, tc.wantErr)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "a/b/c")); err != nil || !fi.IsDir() {
		t.Errorf("/a/b/c: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(root, "a/f")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("/a/f: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "data/x")); err != nil {
		t.Errorf("/lnk/x not created through the in-root symlink: %v", err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("created outside the root through a symlink: %v", entries)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "existing")); string(b) != "keep" {
		t.Errorf("existing file changed: %q", b)
	}
}
