//go:build e2e

package e2e

// Attacks on the container's making, each tried as the unprivileged test
// user the way issue 12 describes it, each refused with nothing left
// behind. One test per attack.

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// userHome is the test user's home directory.
func userHome(t *testing.T) string {
	t.Helper()
	return strings.TrimSpace(asUser(t, "sh", "-c", "echo $HOME").stdout)
}

// inHome is name in the test user's home, as this test cluster's: the
// test users are every cluster's on the machine, and suites may run side by
// side.
func inHome(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(userHome(t), name+"-lab"+os.Getenv("PHPC_LAB_ID"))
}

// userDir makes a fresh directory of the test user's under their home.
func userDir(t *testing.T, name string) string {
	t.Helper()
	dir := inHome(t, name)
	mustSucceed(t, asUser(t, "sh", "-c", `rm -rf "$1" && mkdir -p "$1"`, "sh", dir))
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// onNode runs a shell script on node, as root, or as user when given.
func onNode(t *testing.T, node, user, script string, args ...string) result {
	t.Helper()
	cmd := []string{node}
	if user != "" {
		cmd = append(cmd, "runuser", "-u", user, "--")
	}
	return run(t, cluster["NODE_EXEC"], append(append(cmd, "sh", "-c", script, "sh"), args...)...)
}

// stepInBackground starts srun as the test user with job name name on
// node and returns the job id once it runs, and where srun's result comes.
func stepInBackground(t *testing.T, node, name string, args ...string) (string, chan result) {
	t.Helper()
	done := make(chan result, 1)
	go func() {
		done <- asUser(t, "srun", append([]string{"-N1", "-w", node, "-J", name}, args...)...)
	}()
	for i := 0; i < 100; i++ {
		// Running only: an earlier job of the same name may still be completing.
		job := strings.TrimSpace(run(t, "squeue", "-h", "-t", "RUNNING", "-n", name, "-o", "%i").stdout)
		// And its step: the job runs a moment before srun makes step 0,
		// and a test's own srun --jobid would take that id first.
		if job != "" && slices.Contains(strings.Fields(run(t, "squeue", "-h", "-s", "-j", job, "-o", "%i").stdout), job+".0") {
			return job, done
		}
		select {
		case r := <-done:
			t.Fatalf("the step ended before it was seen running:\n%s", r)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("the step did not start")
	return "", nil
}

// bundleOf waits for the bundle of container id on node and returns its path.
func bundleOf(t *testing.T, node, id string) string {
	t.Helper()
	state := cluster["LAB"] + "/nodelocal/state/containers"
	for i := 0; i < 100; i++ {
		r := onNode(t, node, "", `grep -lx "$1" "$2"/*/id 2>/dev/null`, id, state)
		if p := strings.TrimSpace(r.stdout); p != "" {
			return filepath.Dir(p)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: no bundle for %s", node, id)
	return ""
}

// Item 1: with --container-remap-root the stages of the step's mounts were
// the user's; a symlink planted there made the daemon create and bind a file
// anywhere (/etc/ld.so.preload). Now the bundle and its stages are root's:
// the user may pass through (the runtime needs that), not list, not write.
func TestSecurityRemapRootStagesAreRoots(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, "e2e-sec-stages")
	var mounts []string
	for _, d := range []string{"/a", "/b", "/c", "/d"} {
		mounts = append(mounts, dir+":"+d)
	}
	job, done := stepInBackground(t, node, "sec-stages", "--container-image="+cluster["SMALL_IMAGE"], "--container-remap-root",
		"--container-mounts="+strings.Join(mounts, ","), "sleep", "3")
	bundle := bundleOf(t, node, "phpc-"+job+"-0")
	user := cluster["TEST_USER"]
	r := onNode(t, node, user, `
ls "$2" >/dev/null 2>&1; echo "list=$?"
for i in 0 1 2 3 4 5 9 new; do ln -sT /etc/ld.so.preload "$1/mounts/$i" 2>/dev/null && echo "planted $i"; done
touch "$1/x" 2>/dev/null && echo "wrote bundle"
stat -c "mounts %u %a" "$1/mounts"`, bundle, filepath.Dir(bundle))
	if !strings.Contains(r.stdout, "list=") || strings.Contains(r.stdout, "list=0") {
		t.Errorf("the user lists the containers' directory:\n%s", r)
	}
	if strings.Contains(r.stdout, "planted") || strings.Contains(r.stdout, "wrote") {
		t.Errorf("the user wrote into the bundle:\n%s", r)
	}
	if !strings.Contains(r.stdout, "mounts 0 710") {
		t.Errorf("stages not root's, or open beyond the user's traverse ACL:\n%s", r)
	}
	// Another user may not even pass through.
	if r := onNode(t, node, "nobody", `stat "$1/rootfs" >/dev/null 2>&1 && echo reached`, bundle); strings.Contains(r.stdout, "reached") {
		t.Errorf("another user reaches the bundle")
	}
	mustSucceed(t, <-done)
	if r := onNode(t, node, "", "test -e /etc/ld.so.preload && echo present"); strings.Contains(r.stdout, "present") {
		t.Errorf("/etc/ld.so.preload exists on %s", node)
	}
	checkNothingLeft(t, node)
}

// Item 2: a user's mount over /.podman-hpc/init made the user's program the
// container's first process. The daemon's directory (and the root above
// it) take no user mount, written so or reached through the image's
// symlink, and the init is mounted last.
func TestSecurityInitIsTheDaemons(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, "e2e-sec-init")
	marker := filepath.Join(dir, "pwned")
	evil := filepath.Join(dir, "init")
	mustSucceed(t, asUser(t, "sh", "-c", `printf '#!/bin/sh\ntouch %s\nexec sleep 600\n' "$1" >"$2" && chmod 755 "$2"`, "sh", marker, evil))
	for _, dst := range []string{"/.podman-hpc/init", "/.podman-hpc", "/", "/.podman-hpc/../.podman-hpc/init"} {
		src := evil
		if !strings.HasSuffix(dst, "init") {
			src = dir
		}
		r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts="+src+":"+dst, "true")
		if r.code == 0 || !strings.Contains(r.stderr, "podman-hpc's own") {
			t.Errorf("mount on %s not refused with the reason:\n%s", dst, r)
		}
	}
	img := imageWithTree(t, func(tree string) { os.Symlink("/.podman-hpc", filepath.Join(tree, "evil")) })
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "--container-mounts="+dir+":/evil", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "destination /evil leads to /.podman-hpc in the image, which podman-hpc keeps for itself") {
		t.Errorf("mount through the image's symlink not refused with the reason:\n%s", r)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("the user's program ran as the container's init")
	}
	checkNothingLeft(t, node)
}

// Item 3: a detached child of the image's entrypoint kept running as the
// user after the job, outside Slurm's cgroup. The container's PID
// namespace dies with its init.
func TestSecurityEntrypointChildrenDieWithTheStep(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	img := entrypointImage(t, "#!/bin/sh\nsetsid sh -c 'exec sleep 987654' </dev/null >/dev/null 2>&1 &\nexec \"$@\"\n")
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "--container-entrypoint", "sh", "-c",
		`sleep 0.5; cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' | grep -q "sleep 98765[4]" && echo detached-running`)
	mustSucceed(t, r)
	// The attack is real: the detached child runs during the step.
	if !strings.Contains(r.stdout, "detached-running") {
		t.Fatalf("the entrypoint's detached child did not run:\n%s", r)
	}
	var left string
	for i := 0; i < 50; i++ {
		if left = strings.TrimSpace(onNode(t, node, "", `pgrep -f "sleep 98765[4]"`).stdout); left == "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if left != "" {
		onNode(t, node, "", `pkill -f "sleep 98765[4]"`)
		t.Errorf("the entrypoint's detached child outlived the step (pid %s)", left)
	}
	checkNothingLeft(t, node)
}

// Item 4: PMIX_SERVER_TMPDIR from the job's environment was bound by root:
// a file under a directory the user may not traverse became readable
// inside. The directory is opened as the user, and refused.
func TestSecurityPMIxDirFromEnvironmentAsUser(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	private, err := os.MkdirTemp("", "e2e-sec-pmix-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(private) })
	// The user may not pass through private; sub itself is open to all.
	os.Chmod(private, 0o700)
	sub := filepath.Join(private, "sub")
	os.Mkdir(sub, 0o755)
	if err := os.WriteFile(filepath.Join(sub, "secret"), []byte("root-only-secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := asUser(t, "env", "PMIX_SERVER_TMPDIR="+sub, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "cat", sub+"/secret")
	if strings.Contains(r.stdout, "root-only-secret") {
		t.Fatalf("the user read a root-only file through PMIX_SERVER_TMPDIR:\n%s", r)
	}
	if r.code == 0 || !strings.Contains(r.stderr, "bind "+sub+" for the step") || !strings.Contains(r.stderr, "permission denied") {
		t.Errorf("not refused with the reason:\n%s", r)
	}
	checkNothingLeft(t, node)
}

// Item 6: a writable container's upper layer was 0755 at a predictable
// path: any local user read what the job wrote. The bundle is at an
// unguessable path, root's alone (and the job user's, with remap-root); the
// writes are in a file system of the container's own, whose file is root's
// alone in writable_dir.
func TestSecurityWritableLayerIsPrivate(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	// The image has a directory the job user may write without remap-root.
	img := imageWithTree(t, func(tree string) {
		os.Mkdir(filepath.Join(tree, "scratch"), 0o777)
		os.Chmod(filepath.Join(tree, "scratch"), 0o777|os.ModeSticky)
	})
	for _, mode := range []string{"--container-writable", "--container-remap-root"} {
		job, done := stepInBackground(t, node, "sec-upper", "--container-image="+img, "--container-writable", mode,
			"sh", "-c", "echo job-private >/scratch/written; chmod 644 /scratch/written; sleep 3")
		bundle := bundleOf(t, node, "phpc-"+job+"-0")
		if !regexp.MustCompile(`/[0-9a-f]{32}$`).MatchString(bundle) {
			t.Errorf("%s: bundle path %s is guessable", mode, bundle)
		}
		// The root as the daemon sees it (the runtime's is mounted in its
		// own namespace only), and the layer's upper directory.
		var r result
		for i := 0; i < 50; i++ {
			if r = onNode(t, node, "", `cat "$1/rw/upper/scratch/written" "$1/private/root/scratch/written" 2>/dev/null`, bundle); strings.Count(r.stdout, "job-private") == 2 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if strings.Count(r.stdout, "job-private") != 2 {
			t.Fatalf("%s: the write is not where the test looks:\n%s", mode, r)
		}
		if r := onNode(t, node, "nobody", `cat "$1/rw/upper/scratch/written" "$1/private/root/scratch/written" "$1/rootfs/scratch/written" 2>/dev/null`, bundle); strings.Contains(r.stdout, "job-private") {
			t.Errorf("%s: another user read the job's write:\n%s", mode, r)
		}
		// Nor the file system's file in writable_dir, the job user
		// included: root's, 0600, in root's 0700 directory.
		for _, user := range []string{"nobody", cluster["TEST_USER"]} {
			if r := onNode(t, node, user, `cat "$1"/*.ext4 2>/dev/null | grep -c job-private; ls "$1" 2>/dev/null | wc -l`, writableDir()); r.stdout != "0\n0\n" {
				t.Errorf("%s: %s reads writable_dir or its files:\n%s", mode, user, r)
			}
		}
		if r := onNode(t, node, "", `stat -c '%u %a' "$1" "$1"/*.ext4`, writableDir()); r.stdout != "0 700\n0 600\n" {
			t.Errorf("%s: writable_dir and its file: %q, want root's 0700 and 0600", mode, r.stdout)
		}
		mustSucceed(t, <-done)
	}
	checkNothingLeft(t, node)
}

// Item 9: mksquashfs ran as root over a tree the container could change: a
// file (or directory) swapped for a symlink into /etc mid-save copied the
// host's /etc/shadow into the user's file. The save reads in a sandbox where /etc
// holds nothing of the host's; saves of one container no longer share a
// temporary file.
func TestSecuritySaveReadsNoHostFile(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Skipf("%q not found in PATH", "unsquashfs")
	}
	node := nodes()[0]
	dir := userDir(t, "e2e-sec-save")
	script := filepath.Join(dir, "job.sh")
	img := cluster["SMALL_IMAGE"]
	os.WriteFile(script, []byte(`#!/bin/sh
cd "$1"
srun -n1 --container-image=`+img+` --container-name=race --container-remap-root sh -c 'mkdir -p /d; head -c "$1" /dev/zero >/d/shadow' sh "$2"
srun -n1 --container-name=race --container-remap-root sh -c 'end=$(($(date +%s)+8)); while [ $(date +%s) -lt $end ]; do ln -sf /etc/shadow /d/l; mv -f /d/l /d/shadow; head -c "$1" /dev/zero >/d/n; mv -f /d/n /d/shadow; done' sh "$2" &
sleep 0.5
for i in 1 2 3; do srun -n1 --container-name=race --container-remap-root --container-save="$1/save$i.sqfs" true & done
wait
`), 0o755)
	os.Chmod(script, 0o755)
	// A regular file of /etc/shadow's size (stat needs no read permission)
	// makes mksquashfs's size check pass when it opens the symlink instead.
	size := strings.TrimSpace(onNode(t, node, "", "stat -c %s /etc/shadow").stdout)
	r := asUser(t, "env", "SLURM_EXACT=1", "salloc", "-N1", "-n4", "-t", "2", "-w", node, "-Q", script, dir, size)
	if r.code != 0 {
		t.Logf("the job (saves may fail while the tree changes under them):\n%s", r)
	}
	// A save the tree changed under fails with its cause in srun's
	// output; one that was written holds the container's files only.
	for _, i := range []string{"1", "2", "3"} {
		f := filepath.Join(dir, "save"+i+".sqfs")
		if _, err := os.Stat(f); err != nil {
			if !strings.Contains(r.stderr, "--container-save="+f+": ") {
				t.Errorf("save %s neither written nor failed with a reason:\n%s", i, r)
			}
			continue
		}
		out, _ := exec.Command("unsquashfs", "-cat", f, "d/shadow").Output()
		if strings.Contains(string(out), "root:") {
			t.Errorf("%s holds the host's /etc/shadow", f)
		}
	}
	checkNothingLeft(t, node)
}

// Issue 21, item 1: the save read an overlay built over the container's
// live writable layer, as root, and a file swapped for a symlink to a
// root-only file of the node while it was saved put that file into the
// user's image (4 saves in 6, with /etc/shadow; a file in /root too). The
// save now reads the container's own root as the user, who cannot read it.
// The target is a 0600 file of random bytes in the node's /root; every file
// of every saved image is compared with it.
func TestSecuritySaveSwapReadsNoRootFile(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("unsquashfs"); err != nil {
		t.Skipf("%q not found in PATH", "unsquashfs")
	}
	node := nodes()[0]
	secret := onNode(t, node, "", `umask 077; f=$(mktemp /root/phpc-e2e-secret-XXXXXX) && head -c 1500 /dev/urandom | base64 -w0 >"$f" && echo "$f"`)
	mustSucceed(t, secret)
	target := strings.TrimSpace(secret.stdout)
	t.Cleanup(func() { onNode(t, node, "", `rm -f "$1"`, target) })
	content := onNode(t, node, "", `cat "$1"`, target).stdout
	if len(content) != 2000 {
		t.Fatalf("secret %s: %d bytes, want 2000", target, len(content))
	}
	for _, mode := range []string{"--container-remap-root", "--no-container-remap-root"} {
		t.Run(mode, func(t *testing.T) {
			dir := userDir(t, "e2e-sec-save-swap")
			script := filepath.Join(dir, "job.sh")
			// Step 2 swaps each of 100 files of the secret's size (stat
			// needs no permission, and mksquashfs checks the size it
			// read) for a symlink to it and back; step 3 saves, again
			// and again, while it does.
			os.WriteFile(script, []byte(`#!/bin/sh
cd "$1"; size=$2; target=$3; mode=$4
srun -n1 --container-image=`+cluster["SMALL_IMAGE"]+` --container-name=swap $mode --container-writable sh -c '
mkdir /w && head -c "$1" /dev/zero >/w/r && for i in $(seq 100); do cp /w/r /w/x$i; done' sh "$size" || exit 1
srun --overlap -n1 --container-name=swap sh -c '
end=$(($(date +%s)+12))
while [ $(date +%s) -lt $end ]; do
	for i in $(seq 100); do
		ln -sf "$1" /w/t$i; mv -f /w/t$i /w/x$i; cp /w/r /w/u$i; mv -f /w/u$i /w/x$i
	done
done' sh "$target" &
sleep 2
end=$(($(date +%s)+8)); i=0
while [ $(date +%s) -lt $end ]; do
	i=$((i+1)); srun --overlap -n1 --container-name=swap --container-save="$1/out$i.sqsh" true
done
wait
`), 0o755)
			r := asUser(t, "salloc", "-N1", "-n2", "-t", "2", "-w", node, "-Q", script, dir, "2000", target, mode)
			if r.code != 0 {
				t.Logf("the job (saves may fail while the tree changes under them):\n%s", r)
			}
			saves, _ := filepath.Glob(filepath.Join(dir, "out*.sqsh"))
			if len(saves) == 0 {
				t.Fatalf("no save written:\n%s", r)
			}
			leaked := 0
			for _, f := range saves {
				if n := filesHolding(t, f, content[:100]); len(n) > 0 {
					leaked++
					t.Errorf("%s holds the node's root-only %s as %s", filepath.Base(f), target, strings.Join(n, ", "))
				}
			}
			t.Logf("%d saves, %d holding the secret", len(saves), leaked)
			checkNothingLeft(t, node)
		})
	}
}

// The save's reader is the user, by construction: mksquashfs has the job
// user's uid and gid, in a user namespace that maps only them (to 0), and
// none of the daemon's groups. It was root.
func TestSecuritySaveRunsAsTheUser(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := userDir(t, "e2e-sec-save-user")
	done := make(chan result, 1)
	go func() {
		done <- asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["MPI_IMAGE"], "--container-writable",
			"--container-save="+dir+"/mpi.sqsh", "true")
	}()
	// The test clusters share the host's PID namespace: this cluster's
	// mksquashfs is the one chrooted under its state directory.
	seen := onNode(t, node, "", `for i in $(seq 1000); do
	for p in $(pgrep -x mksquashfs); do
		case $(readlink /proc/$p/root) in "$1"/*)
			grep -E '^(Uid|Gid|Groups):' /proc/$p/status && cat /proc/$p/uid_map /proc/$p/gid_map && exit 0;;
		esac
	done
	sleep 0.01
done; exit 1`, cluster["LAB"])
	mustSucceed(t, <-done)
	if seen.code != 0 {
		t.Fatalf("no mksquashfs of this cluster seen during the save:\n%s", seen)
	}
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	gid := strings.TrimSpace(asUser(t, "id", "-g").stdout)
	fields := strings.Fields(seen.stdout)
	want := []string{"Uid:", uid, uid, uid, uid, "Gid:", gid, gid, gid, gid, "Groups:"}
	if len(fields) < len(want)+6 || !slices.Equal(fields[:len(want)], want) || slices.Contains(fields[len(want):len(fields)-6], "0") {
		t.Fatalf("mksquashfs is not the user (uid %s, gid %s), or has root's group:\n%s", uid, gid, seen.stdout)
	}
	maps := strings.Join(fields[len(fields)-6:], " ")
	if maps != "0 "+uid+" 1 0 "+gid+" 1" {
		t.Errorf("mksquashfs's user namespace maps %q, want only the user's uid and gid", maps)
	}
}

// filesHolding unpacks the squashfs file f and returns its files whose
// contents hold s.
func filesHolding(t *testing.T, f, s string) []string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "tree")
	if out, err := exec.Command("unsquashfs", "-no-xattrs", "-d", tree, f).CombinedOutput(); err != nil {
		t.Fatalf("unsquashfs %s: %v\n%s", f, err, out)
	}
	var found []string
	filepath.WalkDir(tree, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), s) {
				found = append(found, p[len(tree):])
			}
		}
		return nil
	})
	return found
}

// Item 10: attaching matched job id and name only, and job ids are reused:
// a request for another user's named container of the same job id is
// refused. The request is sent on the socket, as root, the way a
// slurmstepd of the reused id would.
func TestSecurityNamedContainerIsItsUsers(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	client := buildWireclient(t)
	job, done := stepInBackground(t, node, "sec-named", "--container-image="+cluster["SMALL_IMAGE"], "--container-name=mine", "sleep", "4")
	var ps string
	for i := 0; i < 50 && !strings.Contains(ps, "phpc-"+job+"-n-mine"); i++ {
		time.Sleep(100 * time.Millisecond)
		ps = podmanHpcd(t, node, "ps").stdout
	}
	r := run(t, cluster["NODE_EXEC"], node, client, "-socket", cluster["PODMAN_HPCD_SOCKET"], "-type", "2",
		"job="+job, "step=7", "uid=65534", "gid=65534", "name=mine", "name_mode=exec", "scope=job", "writable=1")
	if !strings.Contains(r.stdout, "type 65") || !strings.Contains(r.stdout, "belongs to another user") {
		t.Errorf("another uid attached to the named container:\n%s", r)
	}
	mustSucceed(t, <-done)
}

// buildWireclient builds test/e2e/wireclient into a directory every user
// may read, and returns its path.
func buildWireclient(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "wireclient")
	mustSucceed(t, run(t, "go", "build", "-o", bin, "./wireclient"))
	return bin
}

// A daemon restart deleted the bundles that running tasks still used: a
// writable container's upper layer went from under its tasks. The next
// daemon removes a bundle only once its tasks are gone.
func TestSecurityDaemonRestartKeepsBundlesInUse(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	_, done := stepInBackground(t, node, "sec-restart", "--container-image="+cluster["SMALL_IMAGE"], "--container-writable", "--container-remap-root",
		"sh", "-c", "echo still-here >/written; sleep 3; echo later >/later && cat /written /later")
	time.Sleep(time.Second)
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node))
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node))
	r := <-done
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "still-here\nlater" {
		t.Errorf("the task's write went with the restart: %q", r.stdout)
	}
	checkNothingLeft(t, node)
}

// withPlugstackArg adds a plugin argument to the cluster's plugstack.conf
// (read by every srun and slurmstepd) until the test ends.
func withPlugstackArg(t *testing.T, arg string) {
	t.Helper()
	path := filepath.Join(cluster["LAB"], "etc", "plugstack.conf")
	old, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Replaced whole, never rewritten in place: the previous test's job
	// epilog may be reading it this moment (slurmd's spank epilog loads
	// the plugstack anew), and an empty file skips the plugin's epilog,
	// leaving that job's containers behind.
	replace := func(b []byte) error {
		tmp := path + ".new"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, path)
	}
	t.Cleanup(func() {
		if err := replace(old); err != nil {
			t.Error(err)
		}
	})
	if err := replace([]byte(strings.TrimRight(string(old), "\n") + " " + arg + "\n")); err != nil {
		t.Fatal(err)
	}
}

// Item 10: container_scope=global named containers were never removed, and
// what their entrypoint left running outlived every job. Now nothing of one
// runs past its jobs: at the last one's end its processes stop and its
// filesystem waits for the user's next job; the user removes it with
// podman-hpcd rm --name.
func TestSecurityGlobalContainerProcessesEndWithJob(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	withPlugstackArg(t, "container_scope=global")
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	name := "glob" + strconv.FormatInt(time.Now().UnixNano()%1e6, 10)
	t.Cleanup(func() { podmanHpcd(t, node, "rm", "--name", name, "--uid", uid) })
	img := entrypointImage(t, "#!/bin/sh\nsetsid sh -c 'exec sleep 987653' </dev/null >/dev/null 2>&1 &\nexec \"$@\"\n")
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "--container-entrypoint", "--container-remap-root",
		"--container-name="+name, "sh", "-c", `echo kept >/kept; sleep 0.5; cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' ' ' | grep -q "sleep 98765[3]" && echo detached-running`)
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "detached-running") {
		t.Fatalf("the entrypoint's detached child did not run:\n%s", r)
	}
	var left, ps string
	for i := 0; i < 50; i++ {
		left = strings.TrimSpace(onNode(t, node, "", `pgrep -f "sleep 98765[3]"`).stdout)
		ps = podmanHpcd(t, node, "ps").stdout
		if left == "" && strings.Contains(ps, name+" (parked") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if left != "" {
		onNode(t, node, "", `pkill -f "sleep 98765[3]"`)
		t.Errorf("the global container's entrypoint child outlived its job (pid %s)", left)
	}
	if !strings.Contains(ps, name+" (parked") {
		t.Fatalf("the global container is not kept, parked, after its job:\n%s", ps)
	}
	r = asUser(t, "srun", "-N1", "-w", node, "--container-name="+name, "--container-remap-root", "cat", "/kept")
	mustSucceed(t, r)
	if strings.TrimSpace(r.stdout) != "kept" {
		t.Errorf("the next job does not see the kept filesystem: %q", r.stdout)
	}
	// That job ends (and parks the container again) a moment after srun
	// returns; rm refuses a container a running job uses.
	for i := 0; i < 50 && !strings.Contains(podmanHpcd(t, node, "ps").stdout, name+" (parked"); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	rm := run(t, cluster["NODE_EXEC"], node, "runuser", "-u", cluster["TEST_USER"], "--", cluster["PODMAN_HPCD"], "rm",
		"--socket", cluster["PODMAN_HPCD_SOCKET"], "--name", name)
	mustSucceed(t, rm)
	if ps := podmanHpcd(t, node, "ps").stdout; strings.Contains(ps, name) {
		t.Errorf("still listed after rm --name:\n%s", ps)
	}
	checkNothingLeft(t, node)
}

// The image's entrypoint writes the container's output, as much as it
// likes, into a file the daemon (root) read whole, again every 20 ms while
// it waited for the entrypoint: hundreds of megabytes of it grew the
// daemon by as much, each time; and a NUL in it (a binary's output) made the
// daemon's answer unsendable, failing the step. Only its end is read now,
// once, without NULs.
func TestSecurityEntrypointOutputDoesNotBloatTheDaemon(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	img := entrypointImage(t, "#!/bin/sh\nhead -c 300000000 /dev/zero\necho the-end\nsleep 1\nexec \"$@\"\n")
	pid := strings.TrimSpace(onNode(t, node, "", "cat "+filepath.Join(cluster["LAB"], "run", node, "podman-hpcd.pid")).stdout)
	before := rssKB(t, pid)
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "--container-entrypoint", "--container-entrypoint-log", "true")
	mustSucceed(t, r)
	if !strings.Contains(r.stderr, "the-end") {
		t.Errorf("the end of the entrypoint's output is not shown:\n%.2000s", r.stderr)
	}
	if grew := rssKB(t, pid) - before; grew > 60<<10 {
		t.Errorf("the daemon grew by %d MB reading the entrypoint's output", grew>>10)
	}
	checkNothingLeft(t, node)
}

// The SAVE request (the last task's, as the job user) is one any user may
// send: another user asking for the test user's saving step gets it refused,
// and nothing is saved before the step's own tasks are done; the owner's
// step then saves as usual.
func TestSecuritySaveOfAnotherUsersStep(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	client := buildWireclient(t)
	dir := userDir(t, "e2e-sec-save")
	out := dir + "/mine.sqsh"
	job, done := stepInBackground(t, node, "sec-save", "--container-image="+cluster["SMALL_IMAGE"], "--container-writable",
		"--container-save="+out, "sh", "-c", "sleep 3; echo late >/late")
	r := run(t, cluster["NODE_EXEC"], node, "runuser", "-u", nssUser, "--", client, "-socket", cluster["PODMAN_HPCD_SOCKET"],
		"-type", "13", "job="+job, "step=0")
	if !strings.Contains(r.stdout, "type 65") || !strings.Contains(r.stdout, "no step "+job+".0 of yours saves its container") {
		t.Errorf("another user's SAVE of the step was not refused:\n%s", r)
	}
	if _, err := os.Stat(out); err == nil {
		t.Errorf("the step was saved before its tasks were done")
	}
	mustSucceed(t, <-done)
	r = asUser(t, "srun", "-N1", "-w", node, "--container-image="+out, "cat", "/late")
	mustSucceed(t, r)
	if r.stdout != "late\n" {
		t.Errorf("the saved image holds %q", r.stdout)
	}
	checkNothingLeft(t, node)
}

// The bundle's name is in every mountinfo, and its user may pass through it
// (the runtime reaches the root from the container's user namespace). From
// the host, a user's process wrote without bound into state_dir (the node's
// memory) through their own read-only container: its overlay at
// bundle/rootfs, its upper layer and its account files were theirs and
// writable; then, through the root a createContainer hook writes into,
// while the container was made; and held a writable container's file
// system past its end through an open root (reviews of 2026-12-06). Now the
// root the runtime is given is mounted only in the runtime's own mount
// namespace: on the host, bundle/rootfs is an empty directory of root's,
// from the bundle's first moment to its last, and the rest is in a
// directory of root's alone. A watcher of the user's tries all that while
// each container is made, and once it runs.
func TestSecurityBundleTakesNoHostWrites(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	user := cluster["TEST_USER"]
	dir := userDir(t, "e2e-sec-bundle")
	// The watcher, as the user on the node: from the moment a new bundle
	// shows in its mountinfo until $2 exists, every name a bundle held or
	// holds, by name (the bundle cannot be listed).
	const watch = `
seen=$(grep -o 'containers/[0-9a-f]*' /proc/self/mountinfo | sort -u)
b=
for i in $(seq 400); do
	b=$(grep -o 'containers/[0-9a-f]*' /proc/self/mountinfo | sort -u | grep -vxF "$seen" | head -1)
	[ -n "$b" ] && break
	sleep 0.01
done
[ -n "$b" ] || { echo "no new bundle seen"; exit 0; }
b="$1/$b"
echo "watching"
while [ ! -e "$2" ]; do
	for p in . rootfs rootfs/etc upper work lower mounts private private/root private/upper private/work private/lower; do
		[ -d "$b/$p" ] && touch "$b/$p/planted" 2>/dev/null && echo "wrote in $p"
	done
	mkfifo "$b/rootfs/etc/podman-hpc-hook-file" 2>/dev/null && echo "made a fifo in the root"
	for p in passwd group apt.conf private/passwd private/group private/apt.conf; do
		[ -f "$b/$p" ] && (echo x >>"$b/$p") 2>/dev/null && echo "appended to $p"
	done
	ls "$b/private" >/dev/null 2>&1 && echo "listed private"
	stat "$b/rootfs/etc/os-release" >/dev/null 2>&1 && echo "reached the root"
	[ -d "$b" ] && echo "reached the bundle"
done | sort | uniq -c`
	for i, mode := range []string{"--container-remap-root", "--no-container-remap-root", "--container-hooks=rootfile", "--container-writable"} {
		t.Run(mode, func(t *testing.T) {
			stop := fmt.Sprintf("%s/done-%d", dir, i)
			watched := make(chan result, 1)
			go func() { watched <- onNode(t, node, user, watch, cluster["LAB"]+"/nodelocal/state", stop) }()
			time.Sleep(300 * time.Millisecond) // its first mountinfo read
			r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], mode,
				"--container-mounts="+dir+":/mark", "sh", "-c", "sleep 1; touch /mark/done-"+fmt.Sprint(i))
			w := <-watched
			mustSucceed(t, r)
			for _, bad := range []string{"wrote", "appended", "fifo", "private", "reached the root"} {
				if strings.Contains(w.stdout, bad) {
					t.Errorf("the user wrote into, or reached, their container's bundle from the host:\n%s", w)
					break
				}
			}
			if !strings.Contains(w.stdout, "reached the bundle") {
				t.Errorf("the watcher never reached the bundle (is its layout another?):\n%s", w)
			}
		})
	}
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c",
		`grep -c "^$(id -un):" /etc/passwd; touch /x 2>&1 | grep -c "Read-only"`)
	mustSucceed(t, r)
	if r.stdout != "1\n1\n" {
		t.Errorf("the container's account files or read-only root changed:\n%s", r)
	}
	checkNothingLeft(t, node)
}

// A read-only container copies up, into state_dir (the node's memory), the
// image's files of other owners than root, each container at most 256 MiB;
// nothing bounded a user's many containers together, and one user's ten
// steps of such an image filled state_dir for everyone (review of
// 2026-12-06). Now a user's containers on a node together hold at most an
// eighth of it (256 MiB on the test nodes): the second container of an
// image copying 150 MB up is refused while the first runs, with the cause
// and the fix, and starts once the first is gone.
func TestSecurityCopyUpsBoundedPerUser(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	img := imageWithTree(t, func(tree string) {
		os.Mkdir(filepath.Join(tree, "big"), 0o755)
		for i := 0; i < 10; i++ {
			p := filepath.Join(tree, "big", fmt.Sprintf("f%d", i))
			os.WriteFile(p, make([]byte, 15<<20), 0o600)
			os.Chown(p, 4242, 4242)
		}
	})
	dir := userDir(t, "e2e-sec-copyups")
	job, done := stepInBackground(t, node, "sec-copyups", "--container-image="+img, "--container-mounts="+dir+":/mark",
		"sh", "-c", "touch /mark/ready; sleep 6")
	onNode(t, node, "", `for i in $(seq 100); do [ -e "$1" ] && break; sleep 0.1; done`, dir+"/ready")
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "true")
	if r.code == 0 || !strings.Contains(r.stderr, "would pass your share of this node's state_dir") ||
		!strings.Contains(r.stderr, "mksquashfs -all-root") {
		t.Errorf("a second container of job %s's image, past the user's share: want refused with the cause and fix:\n%s", job, r)
	}
	mustSucceed(t, <-done)
	mustSucceed(t, asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "sh", "-c", "wc -c </big/f9"))
	checkNothingLeft(t, node)
}
