//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --container-remap-root: the user is root inside, owns the image's files
// there (a writable root takes writes anywhere), and what they create on
// mounts belongs to them on the host.
func TestRemapRoot(t *testing.T) {
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	dir := inHome(t, "e2e-remap")
	mustSucceed(t, asUser(t, "mkdir", "-p", dir))
	t.Cleanup(func() { os.RemoveAll(dir) })
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["MPI_IMAGE"], "--container-remap-root", "--container-writable",
		"--container-mounts="+dir+":/data", "sh", "-c", "id -u; stat -c %u /etc/passwd /usr/bin; echo x >/etc/new-file && echo wrote; touch /data/made-inside")
	mustSucceed(t, r)
	if r.stdout != "0\n0\n0\nwrote\n" {
		t.Errorf("inside: %q, want root, root-owned files, a write to /etc", r.stdout)
	}
	fi, err := os.Stat(filepath.Join(dir, "made-inside"))
	if err != nil || fileUID(fi) != uid {
		t.Errorf("file made on a mount: %v, owner %v (want %s)", err, fi, uid)
	}
	// No privilege: root inside cannot read what the user could not.
	r = asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-remap-root", "--container-mounts=/etc/shadow:/shadow", "cat", "/shadow")
	if r.code == 0 {
		t.Errorf("root inside read /etc/shadow:\n%s", r)
	}
	// Nor over the node: its /dev/null (the runtime's stdin once) is root's.
	if fi, err := os.Stat("/dev/null"); err != nil || fileUID(fi) != "0" {
		t.Errorf("/dev/null after remap-root steps: owner %v, %v", fi, err)
	}
}
