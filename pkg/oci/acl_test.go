package oci

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The ACL lets exactly one other user through: mode shows the mask, and
// getfacl (where installed) reads the entry back.
func TestAllowTraverse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := AllowTraverse(dir, 12345); err != nil {
		t.Skipf("no POSIX ACLs here: %v", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Group bits show the ACL's mask (--x); other stays ---.
	if got := fi.Mode().Perm(); got != 0o710 {
		t.Errorf("mode %o, want 710 (owner rwx, mask --x, other ---)", got)
	}
	if _, err := exec.LookPath("getfacl"); err != nil {
		return
	}
	out, err := exec.Command("getfacl", "-n", "-p", dir).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"user::rwx", "user:12345:--x", "group::---", "mask::--x", "other::---"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("getfacl lacks %q:\n%s", want, out)
		}
	}
}
