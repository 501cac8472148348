//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// asUserIn runs a command as the test user from dir: srun's and sbatch's
// working directory, which becomes the job's.
func asUserIn(t *testing.T, dir, name string, args ...string) result {
	t.Helper()
	return asUser(t, "sh", append([]string{"-c", `cd "$1" && shift && exec "$@"`, "sh", dir, name}, args...)...)
}

// mustFailWith fails the test unless r failed and its output says want.
func mustFailWith(t *testing.T, r result, want string) {
	t.Helper()
	if r.code == 0 || !strings.Contains(r.stdout+r.stderr, want) {
		t.Errorf("want a failure saying %q, got %s", want, r)
	}
}

// tmpfs:/DST[:OPTIONS]: a fresh tmpfs the job user can write, with the
// tmpfs options asked for, with and without remap-root; bad options are
// refused in srun.
func TestMountsTmpfs(t *testing.T) {
	img := cluster["SMALL_IMAGE"]
	r := asUser(t, "srun", "-N1", "--container-image="+img, "--container-mounts=tmpfs:/scratch:size=8m+mode=700+huge=within_size",
		"sh", "-c", `touch /scratch/f && stat -c '%u %a' /scratch && id -u && grep ' /scratch ' /proc/self/mounts | tail -1`)
	mustSucceed(t, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || lines[0] != lines[1]+" 700" {
		t.Errorf("the tmpfs is not the user's with mode 700:\n%s", r)
	}
	mnt := lines[len(lines)-1]
	for _, want := range []string{"tmpfs /scratch tmpfs", "nosuid", "nodev", "size=8192k", "huge=within_size"} {
		if !strings.Contains(mnt, want) {
			t.Errorf("mount lacks %q: %s", want, mnt)
		}
	}
	r = asUser(t, "srun", "-N1", "--container-image="+img, "--container-remap-root", "--container-mounts=tmpfs:/scratch",
		"sh", "-c", "touch /scratch/f && stat -c %u /scratch/f")
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "0" {
		t.Errorf("under remap-root the tmpfs is not root's inside:\n%s", r)
	}
	for opt, want := range map[string]string{
		"tmpfs:/s:uid=0":       `bad tmpfs option "uid=0"`,
		"tmpfs:/s:size=1g;x":   "bad tmpfs option",
		"tmpfs:/s:suid":        "bad tmpfs option",
		"tmpfs":                "needs a destination",
		"tmpfs:/.podman-hpc/x": "podman-hpc's own",
	} {
		mustFailWith(t, asUser(t, "srun", "-N1", "--container-image="+img, "--container-mounts="+opt, "true"), want)
	}
	checkNothingLeft(t, nodes()[0])
}

// umount:/DST drops the mount the defaults would put at DST: here the
// home, bound by --container-mount-home.
func TestMountsUmount(t *testing.T) {
	img, home := cluster["SMALL_IMAGE"], userHome(t)
	script := `grep -c " ` + home + ` " /proc/self/mounts || true`
	r := asUser(t, "srun", "-N1", "--container-image="+img, "--container-mount-home", "sh", "-c", script)
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) == "0" {
		t.Fatalf("the home is not bound by default, nothing to drop:\n%s", r)
	}
	r = asUser(t, "srun", "-N1", "--container-image="+img, "--container-mount-home", "--container-mounts=umount:"+home, "sh", "-c", script)
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "0" {
		t.Errorf("umount:%s left the home bound:\n%s", home, r)
	}
	// Only the defaults' mounts: the container's init and its reserved
	// directory stay.
	mustFailWith(t, asUser(t, "srun", "-N1", "--container-image="+img, "--container-mounts=umount:/.podman-hpc", "true"), "podman-hpc's own")
}

// Every flag pyxis accepts: unbindable (shown in the propagation), ro;
// never suid or dev, which would undo nosuid,nodev.
func TestMountsFlags(t *testing.T) {
	img := cluster["SMALL_IMAGE"]
	dir := userDir(t, "e2e-mount-flags")
	r := asUser(t, "srun", "-N1", "--container-image="+img, "--container-mounts="+dir+":/mnt:unbindable+ro,"+dir+":/mnt2:rshared",
		"sh", "-c", `grep -E " /mnt2? " /proc/self/mountinfo; touch /mnt/x`)
	mustFailWith(t, r, "Read-only file system")
	for _, re := range []string{` /mnt ro,[^ ]* unbindable -`, ` /mnt2 rw,[^ ]* shared:[0-9]+ -`} {
		if regexpFind(r.stdout, re) == "" {
			t.Errorf("no mount matching %q:\n%s", re, r)
		}
	}
	for _, f := range []string{"suid", "dev", "bogus"} {
		mustFailWith(t, asUser(t, "srun", "-N1", "--container-image="+img, "--container-mounts="+dir+":/mnt:"+f, "true"), `unknown mount flag "`+f+`"`)
	}
}

// fstab's escapes in paths: \040 is a space, in the source and the
// destination.
func TestMountsFstabEscapes(t *testing.T) {
	dir := userDir(t, "e2e-mount escapes")
	mustSucceed(t, asUser(t, "sh", "-c", `echo spaced >"$1/f"`, "sh", dir))
	src := strings.ReplaceAll(dir, " ", `\040`)
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], `--container-mounts=`+src+`:/in\040side`, "cat", "/in side/f")
	mustSucceed(t, r)
	if r.stdout != "spaced\n" {
		t.Errorf("the escaped paths did not bind:\n%s", r)
	}
}

// A missing source fails in srun, before any job, with pyxis's words; one
// relative to the job's directory fails on the node with the same words
// (srun does not know a --chdir).
func TestMountsMissingSource(t *testing.T) {
	dir := userDir(t, "e2e-mount-missing")
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts="+dir+"/nope:/x", "true")
	mustFailWith(t, r, "srun: error: podman-hpc: --container-mounts: source path does not exist: "+dir+"/nope")
	if strings.Contains(r.stderr, "slurmstepd") || strings.Contains(r.stderr, "task 0") {
		t.Errorf("a job ran:\n%s", r)
	}
	r = asUserIn(t, dir, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts=./nope:/x", "true")
	mustFailWith(t, r, "--container-mounts: source path does not exist: "+dir+"/./nope")
	checkNothingLeft(t, nodes()[0])
}

// A destination that climbs out of the root never escapes it: refused
// with the kernel's words, which pyxis's users see; a relative one that
// stays inside is read from the root.
func TestMountsDestinationClimbsOut(t *testing.T) {
	img := cluster["SMALL_IMAGE"]
	for _, dst := range []string{"../home", "/a/../../home", "./../home"} {
		r := asUser(t, "srun", "-N1", "--container-image="+img, "--container-mounts=/home:"+dst, "true")
		mustFailWith(t, r, "Invalid cross-device link")
	}
	// A relative target that stays inside is refused too, as pyxis does.
	r := asUser(t, "srun", "-N1", "--container-image="+img, "--container-mounts=/home:./inside/", "true")
	mustFailWith(t, r, "is relative: give the absolute path in the container")
}

// A step attaching to a running named container with --container-mounts
// (or another image) runs, and srun says they are ignored (pyxis's words):
// they are made with the container.
func TestMountsIgnoredWhenAttaching(t *testing.T) {
	dir := userDir(t, "e2e-mount-attach")
	os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
	r := inAllocation(t, `
srun --container-image=`+cluster["SMALL_IMAGE"]+` --container-name=att true
srun --container-name=att --container-mounts=`+dir+`:/late sh -c 'test -e /late/f && echo mounted || echo not-mounted'
srun --container-name=att --container-image=`+cluster["MPI_IMAGE"]+` grep ^ID= /etc/os-release
`)
	mustSucceed(t, r)
	if !strings.Contains(r.stderr, "ignoring --container-mounts") || !strings.Contains(r.stdout, "not-mounted") {
		t.Errorf("attaching with mounts: want the step run without them and srun saying so:\n%s", r)
	}
	if !strings.Contains(r.stderr, "ignoring --container-image="+cluster["MPI_IMAGE"]) || !strings.Contains(r.stdout, "ID=podman-hpc-small") {
		t.Errorf("attaching with another image: want the container's own and srun saying so:\n%s", r)
	}
	if strings.Count(r.stderr, "ignoring --container-mounts") != 1 {
		t.Errorf("said more than once (or for the step that made it):\n%s", r)
	}
}

// The daemon trusts no client: a request (as slurmstepd would send it)
// with a destination that climbs out, a relative source (which the daemon
// would read in its own directory), a tmpfs owner of the user's choosing
// or a suid flag is refused, and nothing is left.
func TestSecurityMountsRefusedByDaemon(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	client := buildWireclient(t)
	for mount, want := range map[string]string{
		"/home:../home":  "Invalid cross-device link",
		"./:/data":       `source "./" is a relative path`,
		"etc:/data":      `source "etc" is a relative path`,
		"tmpfs:/t:uid=0": `unknown tmpfs option "uid=0"`,
		"/tmp:/t:suid":   `unknown mount flag "suid"`,
		"umount:/":       "podman-hpc's own",
		`/tmp\000:/x`:    "bad escape",
	} {
		r := run(t, cluster["NODE_EXEC"], node, client, "-socket", cluster["PODMAN_HPCD_SOCKET"], "-type", "2",
			"job=999001", "step=0", "uid=65534", "gid=65534", "image="+cluster["SMALL_IMAGE"], "mount="+mount)
		if !strings.Contains(r.stdout, "type 65") || !strings.Contains(r.stdout, want) {
			t.Errorf("mount=%s: want a refusal saying %q:\n%s", mount, want, r)
		}
	}
	checkNothingLeft(t, node)
}

// A relative target is refused in srun, before any job, as pyxis does.
func TestMountsRelativeTargetRefused(t *testing.T) {
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts=/tmp:mnt", "true")
	if r.code == 0 || !strings.Contains(r.stderr, `destination "mnt" in "/tmp:mnt" is relative: give the absolute path in the container (/mnt)`) {
		t.Errorf("a relative target:\n%s", r)
	}
}
