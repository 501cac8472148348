//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// nssUser is known to the node only through an NSS module (test/deps.sh:
// libnss-extrausers), as a site's LDAP or SSSD users are: /etc/passwd, all
// that the daemon (static Go) could read, does not list them.
const nssUser, nssProjectGID = "phpc-nss", 7778

// A directory-service user runs containers: the plugin resolves them in
// slurmstepd through the node's NSS and sends their name, home, shell and
// the job's groups; the container's passwd and group show them by name, and
// a directory only the job's supplementary group may enter is mounted.
func TestDirectoryServiceUser(t *testing.T) {
	requireRoot(t)
	if out, err := exec.Command("getent", "passwd", nssUser).Output(); err != nil || len(out) == 0 {
		t.Skipf("no NSS-only test user %s: run make deps", nssUser)
	}
	if b, _ := os.ReadFile("/etc/passwd"); strings.Contains(string(b), "\n"+nssUser+":") {
		t.Fatalf("%s is in /etc/passwd: the test needs a user only NSS knows", nssUser)
	}
	node := nodes()[0]
	proj := filepath.Join(readableTempDir(t), "proj")
	if err := os.Mkdir(proj, 0o750); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(proj, "data")
	if err := os.WriteFile(data, []byte("project data\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{proj, data} {
		if err := os.Chown(p, 0, nssProjectGID); err != nil {
			t.Fatal(err)
		}
	}
	r := run(t, "runuser", "-u", nssUser, "--", "env", "SLURM_CONF="+cluster["SLURM_CONF"], "srun", "-N1", "-w", node,
		"--container-image="+cluster["SMALL_IMAGE"], "--container-mounts="+proj+":/proj", "sh", "-c",
		`id; cat /proj/data; grep "^`+nssUser+`:" /etc/passwd; grep "^phpc-nss-proj:" /etc/group; test -d "$HOME" && echo home-bound`)
	mustSucceed(t, r)
	// The supplementary group counts (project data) and is in the
	// container's group file; id shows it as nogroup, as under pyxis: the
	// user namespace maps the user's own uid and gid alone.
	for _, want := range []string{"uid=7777(" + nssUser + ")", "gid=7777(" + nssUser + ")", "project data",
		nssUser + ":x:7777:7777:", "/home/" + nssUser, "phpc-nss-proj:x:7778:", "home-bound"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("lacks %q:\n%s", want, r)
		}
	}
	checkNothingLeft(t, node)
}
