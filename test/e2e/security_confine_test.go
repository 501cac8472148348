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

// tracerC attaches (PTRACE_ATTACH) to every podman-hpc init it can see
// whose mount namespace is its own (or unknown to it) and says what
// happened: "attached PID" is the attack working.
const tracerC = `#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
int main(void) {
	char self[128] = "", path[64], buf[256], ns[128];
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;
	readlink("/proc/self/ns/mnt", self, sizeof self - 1);
	while ((e = readdir(d))) {
		int pid = atoi(e->d_name);
		FILE *f;
		size_t len;
		if (pid <= 0) continue;
		snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
		if (!(f = fopen(path, "r"))) continue;
		len = fread(buf, 1, sizeof buf - 1, f);
		fclose(f);
		buf[len] = 0;
		if (strcmp(buf, "/.podman-hpc/init") != 0) continue;
		snprintf(path, sizeof path, "/proc/%d/ns/mnt", pid);
		memset(ns, 0, sizeof ns);
		if (readlink(path, ns, sizeof ns - 1) > 0 && strcmp(ns, self) != 0) continue;
		n++;
		if (ptrace(PTRACE_ATTACH, pid, 0, 0) == 0) {
			waitpid(pid, 0, 0);
			ptrace(PTRACE_DETACH, pid, 0, 0);
			printf("attached %d\n", pid);
		} else {
			printf("refused %d: %s\n", pid, strerror(errno));
		}
	}
	printf("inits %d\n", n);
	return 0;
}
`

// A task may not ptrace its container's init (and so run a program of its
// own outside the step, unfiltered): the init is not dumpable, holds no
// capability, has no_new_privs and the tasks' seccomp filter.
func TestSecurityInitCannotBeTraced(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := readableTempDir(t)
	src := filepath.Join(dir, "tracer.c")
	os.WriteFile(src, []byte(tracerC), 0o644)
	mustSucceed(t, run(t, "gcc", "-static", "-O2", "-o", filepath.Join(dir, "tracer"), src))
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts="+dir+":/t",
		"sh", "-c", `/t/tracer; for p in $(grep -l '^/.podman-hpc/init$' /proc/[0-9]*/cmdline 2>/dev/null); do
			d=${p%/cmdline}; grep -E '^(Seccomp|NoNewPrivs|CapEff):' $d/status 2>/dev/null; done`)
	mustSucceed(t, r)
	if strings.Contains(r.stdout, "attached") || !strings.Contains(r.stdout, "refused") {
		t.Errorf("the task ptraced its container's init (or found none):\n%s", r)
	}
	checkNothingLeft(t, node)
}

// The init's own status, as root sees it: the tasks' filter, no_new_privs,
// no capability, not dumpable (/proc/PID/environ is root's only).
func TestSecurityInitIsConfinedAsATask(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	_, done := stepInBackground(t, node, "sec-init-status", "--container-image="+cluster["SMALL_IMAGE"], "sleep", "4")
	pid := waitForInit(t, node)
	st := onNode(t, node, "", "cat /proc/"+pid+"/status; stat -c %U /proc/"+pid+"/environ").stdout
	for _, want := range []string{"Seccomp:\t2", "NoNewPrivs:\t1", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000"} {
		if !strings.Contains(st, want) {
			t.Errorf("the init's status lacks %q:\n%s", want, st)
		}
	}
	if !strings.HasSuffix(strings.TrimSpace(st), "root") {
		t.Errorf("the init is dumpable (its /proc files are the user's):\n%s", st)
	}
	mustSucceed(t, <-done)
	checkNothingLeft(t, node)
}

// waitForInit returns the pid of this cluster's one running podman-hpc
// init on node.
func waitForInit(t *testing.T, node string) string {
	t.Helper()
	for i := 0; i < 100; i++ {
		r := onNode(t, node, "", `for p in $(pgrep -f '^/[.]podman-hpc/init'); do grep -qsF "$1/" /proc/$p/mountinfo && echo $p; done`, cluster["LAB"])
		if pid := strings.TrimSpace(r.stdout); pid != "" && !strings.Contains(pid, "\n") {
			return pid
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no init of this cluster's running")
	return ""
}

// What the image's entrypoint leaves running has the tasks' filter, and
// its output is bounded: 64 MiB written to stdout lands nowhere of root's
// (the daemon stops reading at 1 MiB; the writer gets EPIPE).
func TestSecurityEntrypointChildConfinedAndBounded(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	// sleep 987652: a child to look at; sleep 987653 runs only if its
	// writer got all of its 64 MiB out.
	img := entrypointImage(t, "#!/bin/sh\nsleep 987652 &\n(head -c 67108864 /dev/zero && exec sleep 987653) &\nexec \"$@\"\n")
	_, done := stepInBackground(t, node, "sec-entrypoint-bound", "--container-image="+img, "--container-entrypoint", "sh", "-c",
		`sleep 2; for p in /proc/[0-9]*; do c=$(tr '\0' ' ' <$p/cmdline 2>/dev/null); case $c in "sleep 98765"[23]*) echo "$c: $(grep -E '^Seccomp:' $p/status)";; esac; done; sleep 2`)
	time.Sleep(3 * time.Second)
	big := onNode(t, node, "", "find "+cluster["LAB"]+"/nodelocal/state -xdev -type f -size +2M").stdout
	if strings.TrimSpace(big) != "" {
		t.Errorf("the container's output grew a file of root's:\n%s", big)
	}
	r := <-done
	mustSucceed(t, r)
	if !regexp.MustCompile(`sleep 987652 *: Seccomp:\s+2`).MatchString(r.stdout) {
		t.Errorf("the entrypoint's child runs without the tasks' filter:\n%s", r)
	}
	if strings.Contains(r.stdout, "sleep 987653") {
		// The child got past its 64 MiB: the pipe was not closed on it.
		t.Errorf("the entrypoint's child wrote 64 MiB and went on:\n%s", r)
	}
	checkNothingLeft(t, node)
}

// An entrypoint that makes namespaces of its own before it runs the init
// (unshare) does not get them handed to the tasks: they join the ones the
// runtime made, opened before any of the image's code ran.
func TestSecurityEntrypointNamespacesAreNotTheTasks(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	img := entrypointImage(t, "#!/bin/sh\nexec unshare --user --map-root-user --mount sh -c 'mount -t tmpfs none /tmp && touch /tmp/entrypoint-made && exec \"$@\"' sh \"$@\"\n")
	r := asUser(t, "srun", "-N1", "-w", node, "--container-image="+img, "--container-entrypoint", "--container-entrypoint-log", "sh", "-c",
		`ls /tmp; echo listed`)
	if strings.Contains(r.stdout, "entrypoint-made") {
		t.Errorf("the tasks joined the entrypoint's own namespaces:\n%s", r)
	}
	if !strings.Contains(r.stdout, "listed") {
		t.Errorf("the step did not run:\n%s", r)
	}
	checkNothingLeft(t, node)
}

// syscallsC calls what the tasks' filter refuses beyond privileged calls
// (io_uring, userfaultfd, the keyrings) and what it leaves
// (perf_event_open is the node's perf_event_paranoid's to refuse), and
// prints each errno.
const syscallsC = `#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
static void try(const char *name, long rc) {
	printf("%s %s\n", name, rc < 0 ? strerror(errno) : "ok");
}
int main(void) {
	char params[120] = {0};
	try("io_uring_setup", syscall(425, 1, params));
	try("userfaultfd", syscall(SYS_userfaultfd, 1 /* UFFD_USER_MODE_ONLY */));
	try("keyctl", syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0));
	try("add_key", syscall(SYS_add_key, "user", "k", "v", 1, -3));
	return 0;
}
`

// In a task (and in the container's own processes, which get the same
// filter), io_uring is unknown (ENOSYS: libraries fall back), userfaultfd
// and the keyrings are refused.
func TestSecurityTaskFilterRefusesIoUringAndKeyrings(t *testing.T) {
	requireRoot(t)
	dir := readableTempDir(t)
	src := filepath.Join(dir, "calls.c")
	os.WriteFile(src, []byte(syscallsC), 0o644)
	mustSucceed(t, run(t, "gcc", "-static", "-O2", "-o", filepath.Join(dir, "calls"), src))
	r := asUser(t, "srun", "-N1", "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts="+dir+":/t", "/t/calls")
	mustSucceed(t, r)
	for _, want := range []string{"io_uring_setup Function not implemented", "userfaultfd Operation not permitted", "keyctl Operation not permitted", "add_key Operation not permitted"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("want %q:\n%s", want, r)
		}
	}
}
