//go:build e2e

package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Every task runs in a user namespace that maps the job user's one id, as
// under pyxis: "UID UID 1" without --container-remap-root, "0 UID 1" with
// it, for its uid and gid alike, with the seccomp filter in both modes.
// Under remap-root the setuid, setgid and setgroups families succeed without
// effect (a package manager's drop to its own user); without it they fail.
func TestIdentityOneIDUserNamespace(t *testing.T) {
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	gid := strings.TrimSpace(asUser(t, "id", "-g").stdout)
	script := `tr -s ' ' <"/proc/self/uid_map"; tr -s ' ' </proc/self/gid_map; grep '^Seccomp:' /proc/self/status
setpriv --reuid=42 --regid=42 --clear-groups id -u 2>/dev/null || echo setpriv=failed`
	for _, remap := range []bool{false, true} {
		args := []string{"-N1", "--container-image=" + cluster["MPI_IMAGE"]}
		in, drop := uid, "setpriv=failed"
		if remap {
			args = append(args, "--container-remap-root")
			in, drop = "0", "0" // still root: the drop did nothing
		}
		r := asUser(t, "srun", append(args, "sh", "-c", script)...)
		mustSucceed(t, r)
		inG := gid
		if remap {
			inG = "0"
		}
		want := " " + in + " " + uid + " 1\n" + " " + inG + " " + gid + " 1\n" + "Seccomp:\t2\n" + drop + "\n"
		if r.stdout != want {
			t.Errorf("remap-root %v: got %q, want %q", remap, r.stdout, want)
		}
	}
}

// A named container's later steps and a batch script's steps get the same:
// the user namespace is the container's, joined by every task.
func TestIdentityNamedAndBatchSteps(t *testing.T) {
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	dir := userDir(t, "e2e-identity")
	script := "#!/bin/sh\n#SBATCH -N1\n#SBATCH --container-image=" + cluster["MPI_IMAGE"] + "\n" +
		"cat /proc/self/uid_map\n" +
		"srun --container-image=" + cluster["MPI_IMAGE"] + " --container-name=idn --container-remap-root true\n" +
		"srun --container-name=idn sh -c 'cat /proc/self/uid_map; grep ^Seccomp: /proc/self/status'\n"
	r := asUser(t, "sh", "-c", `cd "$1" && printf '%s' "$2" >job.sh && sbatch --parsable -o out job.sh`, "sh", dir, script)
	mustSucceed(t, r)
	job := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	for deadline := time.Now().Add(2 * time.Minute); !jobEnded(t, job); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("job %s did not end in 2 minutes", job)
		}
	}
	r = asUser(t, "cat", filepath.Join(dir, "out"))
	mustSucceed(t, r)
	got := strings.Fields(r.stdout)
	want := []string{uid, uid, "1", "0", uid, "1", "Seccomp:", "2"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("batch script, then a remap-root named container's next step: got %q, want %q", got, want)
	}
	checkNothingLeft(t, nodes()[0])
}
