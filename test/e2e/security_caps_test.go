//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A remap-root task holds capabilities, as enroot's root does under pyxis:
// in a user namespace of the tasks' own (a sibling of the container's),
// whose mount namespace is a copy of the container's with every mount
// locked (internal/node/nest.go).
// These tests try, with them, to undo each mount the runtime and the
// daemon made and to reach the node, the daemon and another container
// (testdata/capsprobe.c), and check that the same probe, given the same
// capabilities in the container's own user namespace, does undo them.

// capsProbe builds testdata/capsprobe.c into a directory the test user can
// read, with a root-owned 0600 file (secret) and 0644 file (rootfile).
func capsProbe(t *testing.T) string {
	t.Helper()
	requireRoot(t)
	dir := readableTempDir(t)
	src, err := os.ReadFile("testdata/capsprobe.c")
	if err != nil {
		t.Fatal(err)
	}
	compileStatic(t, dir, "capsprobe", string(src))
	for name, mode := range map[string]os.FileMode{"secret": 0o600, "rootfile": 0o644} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("root's\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// probeLines returns the probe's lines of kind (PASS, LEAK, WRONG,
// CONTROL), without the kind.
func probeLines(out, kind string) []string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(l, kind+" "); ok {
			got = append(got, rest)
		}
	}
	return got
}

// The attack, from a remap-root task: every mount of its namespace
// (the image's root, /.podman-hpc/init, the user's bind, the home, the
// passwd and group files, /dev's entries, /tmp, /proc's and /sys's masks
// and read-only binds) stays where it is, as it is: no unmount, lazy or
// not, no move, no flag taken off (read-only, nosuid, nodev), no copy
// without its submounts, no idmapped copy, not in a private copy of the
// namespace nor after pivot_root; no new proc or sysfs; chroot leads
// back to the container's root; no device node; no root file of the
// node read or written; the node's hostname unchanged; and the daemon,
// another container of the same user, the containers' inits and the
// holders of the tasks' namespaces are out of reach (namespaces, root,
// ptrace). Each refusal is the kernel's answer for a locked mount or a
// foreign namespace (EINVAL, EPERM, EACCES), not the lack of a
// capability: the probe's controls mount, unmount and strip its own
// tmpfs. The control run: the same probe, in the container's own user and
// mount namespaces with the same capabilities (what the tasks would hold
// without the nesting), unmounts and moves what the runtime mounted.
func TestSecurityRemapRootCapabilitiesRevealNothing(t *testing.T) {
	dir := capsProbe(t)
	node := nodes()[0]
	hidden := cluster["LAB"] + "/nodelocal/state"
	daemonPid := strings.TrimSpace(onNode(t, node, "", "cat "+cluster["LAB"]+"/run/"+node+"/podman-hpcd.pid").stdout)
	nodeHost := strings.TrimSpace(onNode(t, node, "", "hostname").stdout)

	// Another container of the same user, running meanwhile.
	job, done := stepInBackground(t, node, "caps-victim", "--container-image="+cluster["SMALL_IMAGE"], "--container-remap-root",
		"--container-mounts="+dir+":/probe", "sleep", "86427")
	t.Cleanup(func() {
		run(t, "scancel", job)
		<-done
	})
	initPid := waitForInit(t, node)
	victim := ""
	for i := 0; i < 100 && victim == ""; i++ {
		victim = strings.TrimSpace(onNode(t, node, "", `pgrep -f '^(/bin/)?sleep 86427$' | head -1`).stdout)
		time.Sleep(50 * time.Millisecond)
	}
	if victim == "" {
		t.Fatal("the other container's task is not running")
	}

	probe := []string{"/probe/capsprobe", hidden, "/probe/secret", "/probe/rootfile", daemonPid, victim, initPid, "1"}
	r := asUser(t, "srun", append([]string{"-N1", "-w", node, "--container-image=" + cluster["SMALL_IMAGE"], "--container-remap-root",
		"--container-mounts=" + dir + ":/probe"}, probe...)...)
	mustSucceed(t, r)
	for _, l := range probeLines(r.stdout, "LEAK") {
		t.Errorf("the task did it: %s", l)
	}
	for _, l := range probeLines(r.stdout, "WRONG") {
		t.Errorf("refused for another reason than expected: %s", l)
	}
	controls := strings.Join(probeLines(r.stdout, "CONTROL"), "\n")
	for _, want := range []string{"mount-tmpfs ok", "umount-own-tmpfs ok", "strip-nosuid-of-own-tmpfs ok", "unshare-mount-namespace ok",
		"pivot_root ok", "chroot ok", "clone-a-bind ok"} {
		if !strings.Contains(controls, want) {
			t.Errorf("control %q failed: the refusals prove nothing\n%s", want, r)
		}
	}
	if m := regexp.MustCompile(`inits-seen (\d+)`).FindStringSubmatch(controls); m == nil || m[1] == "0" {
		t.Errorf("the probe saw no container init:\n%s", r)
	}
	if m := regexp.MustCompile(`holders-seen (\d+)`).FindStringSubmatch(controls); m == nil || m[1] == "0" {
		t.Errorf("the probe saw no nest holder:\n%s", r)
	}
	passes := strings.Join(probeLines(r.stdout, "PASS"), "\n")
	for _, want := range []string{
		"umount / ", "umount /.podman-hpc/init ", "umount-lazy /.podman-hpc/init ", "umount /probe ", "umount /root ",
		"umount /etc/passwd ", "umount /dev/null ", "umount /tmp ", "umount-lazy /proc/keys ", "umount-lazy /proc/timer_list ",
		"umount-lazy /proc/acpi ",
		"umount-lazy /sys/firmware ", "umount-lazy /proc/sys ", "move /probe ", "move /.podman-hpc/init ",
		"make-writable / ", "remount-rw / ", "make-writable /proc/sys ", "allow-setuid /probe ", "allow-devices /probe ",
		"strip-flags-recursively / ", "bind-without-submounts / ", "clone-without-submounts /proc ",
		"mount-new proc ", "mount-new sysfs ", "fsmount-new proc ", "idmap-a-bind /probe ", "strip-flags-of-a-clone /probe ",
		"umount-in-private-copy /proc/keys ", "umount-after-pivot_root /old/proc/keys ", "chroot-escape-sees " + hidden,
		"see-the-node " + hidden, "read-root-file /probe/secret ", "write-root-file /probe/rootfile ", "chmod-root-file ",
		"mknod-device ", "write-image-root ", "write-init ", "write-node-sysctl ", "sethostname-of-the-node ", "open_by_handle_at ",
		"outside-mnt-namespace /proc/" + daemonPid + "/", "outside-root /proc/" + daemonPid + "/", "outside-ptrace " + daemonPid,
		"outside-mnt-namespace /proc/" + victim + "/", "outside-user-namespace /proc/" + victim + "/", "outside-root /proc/" + victim + "/",
		"outside-ptrace " + victim, "outside-ptrace " + initPid, "container-init-mnt-namespace", "nest-holder-ptrace",
	} {
		if !strings.Contains(passes, want) {
			t.Errorf("no refusal of %q:\n%s", want, r)
		}
	}
	if got := strings.TrimSpace(onNode(t, node, "", "hostname").stdout); got != nodeHost {
		t.Errorf("the node's hostname is %q, was %q", got, nodeHost)
	}

	// The control run: as root of the container's own user namespace, in
	// its own mount namespace (the init's), the probe undoes the mounts
	// and shows what mounts cover. The root it cannot make writable even
	// there: the daemon gave the runtime a read-only mount, whose flag the
	// container's user namespace inherits locked.
	c := onNode(t, node, "", `pid=$1; shift; exec nsenter -t "$pid" -U -m -- "$@"`, append([]string{initPid}, probe[:4]...)...)
	leaks := strings.Join(probeLines(c.stdout, "LEAK"), "\n")
	for _, want := range []string{"umount-lazy /proc", "umount /etc/passwd", "umount /root", "umount-lazy /probe", "umount-lazy /.podman-hpc/init",
		"bind-without-submounts /"} {
		if !strings.Contains(leaks, want) {
			t.Errorf("control: the probe could not %q in the container's own namespaces (does it detect anything?):\n%s", want, c)
		}
	}
	for _, l := range []string{"make-writable /", "write-image-root"} {
		if strings.Contains(leaks, l) {
			t.Errorf("the container's own user namespace could %q: its root is not locked read-only\n%s", l, c)
		}
	}
	run(t, "scancel", job)
	<-done
	done <- result{}
	checkNothingLeft(t, node)
}

// pyxis's own tests: a remap-root task mounts a tmpfs in its container, and
// one of a container with its own UTS namespace sets the hostname, which
// all its tasks (and its later steps) share and the node keeps its own.
// Without remap-root the task holds no capability (enroot's non-root user
// holds none either), and without --container-unshare=uts the hostname is
// the node's, which no task may set.
func TestRemapRootMountAndHostname(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	nodeHost := strings.TrimSpace(onNode(t, node, "", "hostname").stdout)
	nodeUTS := strings.TrimSpace(onNode(t, node, "", "readlink /proc/self/ns/uts").stdout)
	img := cluster["APT_IMAGE"]

	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "--container-remap-root",
		"sh", "-c", "mount -t tmpfs none /mnt && echo hello >/mnt/f && cat /mnt/f && grep ' /mnt ' /proc/self/mountinfo")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "hello\n") || !strings.Contains(r.stdout, " /mnt ") {
		t.Errorf("remap-root: mount -t tmpfs none /mnt:\n%s", r)
	}
	r = asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "sh", "-c", "mount -t tmpfs none /mnt; echo rc=$?")
	if !strings.Contains(r.stdout, "rc=") || strings.Contains(r.stdout, "rc=0") {
		t.Errorf("without remap-root the mount worked:\n%s", r)
	}

	// As the test user: a root job's tasks hold no capability.
	r = asUser(t, "env", "SLURM_EXACT=1", "salloc", "-N1", "-n4", "-t", "2", "-w", node, "-Q", "sh", "-c", `
export SLURM_NTASKS=1 SLURM_NPROCS=1
srun -n2 --container-image=`+img+` --container-remap-root --container-unshare=uts --container-name=uts sh -c 'hostname; readlink /proc/self/ns/uts; [ "$SLURM_PROCID" = 0 ] && hostname container-test; sleep 1; echo "after=$(hostname)"'
srun --container-name=uts sh -c 'echo "attached=$(hostname)"'
srun --container-image=`+img+` --container-remap-root sh -c 'hostname other-name; echo "shared-rc=$?"; hostname'
srun --container-image=`+img+` --container-unshare=uts sh -c 'hostname other-name; echo "nonroot-rc=$?"'
`)
	mustSucceed(t, r)
	out := r.stdout
	if strings.Count(out, nodeHost+"\n") < 2 {
		t.Errorf("the container's hostname does not start as the node's (%s):\n%s", nodeHost, r)
	}
	uts := regexp.MustCompile(`uts:\[\d+\]`).FindAllString(out, -1)
	if len(uts) != 2 || uts[0] != uts[1] || uts[0] == nodeUTS {
		t.Errorf("the tasks are not in one UTS namespace of their own (node's %s): %q\n%s", nodeUTS, uts, r)
	}
	if strings.Count(out, "after=container-test\n") != 2 || !strings.Contains(out, "attached=container-test\n") {
		t.Errorf("the tasks and the later step do not share the hostname set:\n%s", r)
	}
	for _, want := range []string{"shared-rc=1", "nonroot-rc=1"} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q: a task set the node's hostname, or one without remap-root did:\n%s", want, r)
		}
	}
	if got := strings.TrimSpace(onNode(t, node, "", "hostname").stdout); got != nodeHost {
		t.Errorf("the node's hostname is %q, was %q", got, nodeHost)
	}
	checkNothingLeft(t, node)
}
