package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The image's entries of other owners, and the directories above them, are
// copied up as the user's with their modes; a directory the daemon could
// not search through the idmapped layer is copied whole and opaque; the
// rest of the image stays below.
func TestOwnForeign(t *testing.T) {
	requireRoot(t)
	image := t.TempDir()
	mk := func(rel string, mode os.FileMode, uid, gid int, data string) {
		t.Helper()
		p := filepath.Join(image, rel)
		var err error
		if data == "" {
			err = os.Mkdir(p, 0o700)
		} else {
			err = os.WriteFile(p, []byte(data), 0o600)
		}
		if err == nil {
			err = os.Lchown(p, uid, gid)
		}
		if err == nil {
			err = os.Chmod(p, mode)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	mk("etc", 0o755|os.ModeDir, 0, 0, "")
	mk("etc/shadow", 0o640, 0, 42, "secret")
	mk("usr", 0o755|os.ModeDir, 0, 0, "")
	mk("usr/file", 0o644, 0, 0, "root's")
	mk("var", 0o755|os.ModeDir, 0, 0, "")
	mk("var/mail", 0o775|os.ModeDir|os.ModeSetgid, 0, 8, "")
	mk("var/mail/root", 0o600, 0, 0, "mail")
	mk("var/partial", 0o700|os.ModeDir, 42, 0, "")
	mk("var/partial/f", 0o644, 0, 0, "inside")
	if err := os.Symlink("f", filepath.Join(image, "var/partial/l")); err != nil {
		t.Fatal(err)
	}
	for _, run := range []string{"walked", "cached"} {
		upper := t.TempDir()
		if err := ownForeign(image, upper, "sha256:test-own-foreign", 1001, 1002, budgetOf(foreignBudget)); err != nil {
			t.Fatalf("%s: %v", run, err)
		}
		for rel, mode := range map[string]uint32{
			"etc": 0o755 | unix.S_IFDIR, "etc/shadow": 0o640 | unix.S_IFREG, "var": 0o755 | unix.S_IFDIR,
			"var/mail": 0o2775 | unix.S_IFDIR, "var/partial": 0o700 | unix.S_IFDIR,
			"var/partial/f": 0o644 | unix.S_IFREG, "var/partial/l": 0o777 | unix.S_IFLNK,
		} {
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(upper, rel), &st); err != nil {
				t.Errorf("%s: %s not copied up: %v", run, rel, err)
				continue
			}
			if st.Uid != 1001 || st.Gid != 1002 || st.Mode != mode {
				t.Errorf("%s: %s: %d:%d %o, want 1001:1002 %o", run, rel, st.Uid, st.Gid, st.Mode, mode)
			}
		}
		for _, rel := range []string{"usr", "var/mail/root"} {
			if _, err := os.Lstat(filepath.Join(upper, rel)); err == nil {
				t.Errorf("%s: %s (root's, not below a foreign directory) copied up", run, rel)
			}
		}
		if b, _ := os.ReadFile(filepath.Join(upper, "etc/shadow")); string(b) != "secret" {
			t.Errorf("%s: etc/shadow holds %q", run, b)
		}
		buf := make([]byte, 8)
		n, err := unix.Lgetxattr(filepath.Join(upper, "var/partial"), "trusted.overlay.opaque", buf)
		if err != nil || string(buf[:n]) != "y" {
			t.Errorf("%s: var/partial not opaque: %q %v", run, buf[:n], err)
		}
		if _, err := unix.Lgetxattr(filepath.Join(upper, "var/mail"), "trusted.overlay.opaque", buf); err == nil {
			t.Errorf("%s: var/mail (searchable by other) made opaque", run)
		}
	}
}

// An image whose files are all another owner's is not copied up whole at
// every container's start: past the budget, the container fails with the
// cause and the fix.
func TestOwnForeignBudget(t *testing.T) {
	requireRoot(t)
	image := t.TempDir()
	for i := 0; i < 5; i++ {
		p := filepath.Join(image, "f"+string(rune('a'+i)))
		if err := os.WriteFile(p, []byte("the user's"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 1001, 1001); err != nil {
			t.Fatal(err)
		}
	}
	saved := foreignBudget
	t.Cleanup(func() { foreignBudget = saved })
	foreignBudget = copyBudget{bytes: 1 << 20, entries: 3}
	err := ownForeign(image, t.TempDir(), "sha256:test-own-foreign-budget", 1001, 1001, budgetOf(foreignBudget))
	if err == nil || !strings.Contains(err.Error(), "mksquashfs -all-root") {
		t.Fatalf("5 foreign files against a budget of 3: %v", err)
	}
	foreignBudget = copyBudget{bytes: 1 << 20, entries: 5}
	if err := ownForeign(image, t.TempDir(), "sha256:test-own-foreign-budget", 1001, 1001, budgetOf(foreignBudget)); err != nil {
		t.Errorf("5 foreign files within a budget of 5: %v", err)
	}
	foreignBudget = copyBudget{bytes: 20, entries: 5}
	if err := ownForeign(image, t.TempDir(), "sha256:test-own-foreign-budget", 1001, 1001, budgetOf(foreignBudget)); err == nil {
		t.Errorf("50 bytes copied against a budget of 20")
	}
}

// budgetOf is a fresh copy of b, as userRoot takes one for each container.
func budgetOf(b copyBudget) *copyBudget { return &b }

// A user's copy-ups on a node together stay within their share, everyone's
// within the node's; what a removed container held is given back.
func TestCopyupShares(t *testing.T) {
	s := &copyupShares{perUser: 10 << 12, total: 15 << 12, used: map[uint32]int64{}}
	if _, err := s.take(1, 8<<12, copyupWhat, copyupFix); err != nil {
		t.Fatal(err)
	}
	if _, err := s.take(1, 3<<12, copyupWhat, copyupFix); err == nil || !strings.Contains(err.Error(), "your share of this node's state_dir") {
		t.Errorf("past the user's share: %v", err)
	}
	if _, err := s.take(2, 7<<12, copyupWhat, copyupFix); err != nil {
		t.Fatalf("another user's, within the node's: %v", err)
	}
	if _, err := s.take(3, 1<<12, copyupWhat, copyupFix); err == nil || !strings.Contains(err.Error(), "all users' containers") {
		t.Errorf("past the node's: %v", err)
	}
	s.give(1, 8<<12)
	if _, err := s.take(3, 8<<12, copyupWhat, copyupFix); err != nil {
		t.Errorf("once given back: %v", err)
	}
	if s.used[1] != 0 || s.all != 15<<12 {
		t.Errorf("ledger: %v, all %d", s.used, s.all)
	}
}

// Empty files cost an inode each: the shares count state_dir's inodes too,
// at its size over its inode count, so that many empty entries stop at the
// same share as their bytes would (a review filled every inode with them).
func TestCopyupSharesCountInodes(t *testing.T) {
	s := &copyupShares{perUser: 10 << 10, total: 1 << 30, perEntry: 1 << 10, used: map[uint32]int64{}}
	n := 0
	for ; n < 100; n++ {
		if _, err := s.take(1, 0, copyupWhat, copyupFix); err != nil {
			break
		}
	}
	if n != 10 {
		t.Errorf("%d empty entries within a share of 10 inodes' worth", n)
	}
	real := newCopyupShares(t.TempDir())
	if real.perUser > 0 && real.perEntry <= 0 {
		t.Errorf("a file system with inodes gives no cost per entry: %+v", real)
	}
}

// ownForeign charges each copied entry to the share, and stops at it.
func TestOwnForeignWithinShare(t *testing.T) {
	requireRoot(t)
	image := t.TempDir()
	for i := 0; i < 4; i++ {
		p := filepath.Join(image, "f"+string(rune('a'+i)))
		if err := os.WriteFile(p, make([]byte, 5000), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(p, 1001, 1001); err != nil {
			t.Fatal(err)
		}
	}
	s := &copyupShares{perUser: 3 * 8192, total: 1 << 30, used: map[uint32]int64{}}
	b := foreignBudget
	b.share, b.uid = s, 1001
	err := ownForeign(image, t.TempDir(), "sha256:test-own-foreign-share", 1001, 1001, &b)
	if err == nil || !strings.Contains(err.Error(), "your share") {
		t.Fatalf("4 files of 2 pages against a share of 6 pages: %v", err)
	}
	if b.taken != 3*8192 || s.used[1001] != b.taken {
		t.Errorf("taken %d, ledger %d: want the 3 files copied", b.taken, s.used[1001])
	}
}
