//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --container-save writes the container's filesystem, with the step's
// writes, as a squashfs the user owns, usable as an image; an existing file
// is replaced; a path the user cannot write stays unwritten. The user
// installs as root inside (remap-root), the usual way.
func TestContainerSave(t *testing.T) {
	home := strings.TrimSpace(asUser(t, "sh", "-c", "echo $HOME").stdout)
	out := filepath.Join(home, "e2e-saved.sqfs")
	t.Cleanup(func() { os.Remove(out) })
	for round, word := range []string{"first", "second"} {
		r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-writable", "--container-remap-root",
			"--container-save="+out, "sh", "-c", "echo "+word+" >/saved-file")
		mustSucceed(t, r)
		fi, err := os.Stat(out)
		if err != nil {
			t.Fatalf("round %d: no saved file: %v", round, err)
		}
		if uid := fileUID(fi); uid != strings.TrimSpace(asUser(t, "id", "-u").stdout) {
			t.Errorf("saved file owned by uid %s, not the user", uid)
		}
		r = asUser(t, "srun", "-N1", "--container-image="+out, "cat", "/saved-file", "/etc/os-release")
		mustSucceed(t, r)
		if !strings.HasPrefix(r.stdout, word+"\n") || !strings.Contains(r.stdout, "ID=podman-hpc-small") {
			t.Errorf("round %d: the saved image holds %q", round, r.stdout)
		}
	}
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-save=/root/nope.sqfs", "true")
	if _, err := os.Stat("/root/nope.sqfs"); err == nil {
		os.Remove("/root/nope.sqfs")
		t.Errorf("saved into /root as the user:\n%s", r)
	}
}
