//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// What a task is left with (issue 12, items 5, 10, 11): no inherited
// connection of the plugin's, no new privileges, no capabilities (but, under
// remap-root, those of its own user namespace), the
// seccomp filter, mounts that are nosuid and nodev all the way down, and a
// named container that goes with its job without an Epilog script.

// compileStatic builds a static C program from src into dir, named name.
func compileStatic(t *testing.T, dir, name, src string) string {
	t.Helper()
	c := filepath.Join(t.TempDir(), name+".c")
	if err := os.WriteFile(c, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, name)
	if out, err := exec.Command("gcc", "-static", "-O2", "-o", bin, c).CombinedOutput(); err != nil {
		t.Fatalf("gcc %s: %v\n%s", name, err, out)
	}
	return bin
}

// statusOf returns the fields of a /proc/PID/status text.
func statusOf(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// Every task has no_new_privs and the seccomp filter; without remap-root it
// holds no capability in any set, and under remap-root every one (none
// ambient or inheritable) of the tasks' own user namespace it joined only
// (security_caps_test.go: they undo no mount and reach nothing), where
// chown and setuid succeed without effect (package managers); the step
// still works.
func TestSecurityTaskPrivileges(t *testing.T) {
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	last, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(last)))
	full := fmt.Sprintf("%016x", uint64(1)<<(n+1)-1)
	script := `grep -E '^(NoNewPrivs|Seccomp|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' /proc/self/status
touch /tmp/owned; chown 12345 /tmp/owned && echo chown=ok || echo chown=failed; echo "owner=$(stat -c %u /tmp/owned)"; echo "id=$(id -u)"
echo "userns=$(readlink /proc/self/ns/user)"`
	nodeUserNS := strings.TrimSpace(run(t, cluster["NODE_EXEC"], nodes()[0], "readlink", "/proc/self/ns/user").stdout)
	for _, remap := range []bool{false, true} {
		args := []string{"-N1", "-w", nodes()[0], "--container-image=" + cluster["SMALL_IMAGE"]}
		wantID, wantChown, caps := uid, "chown=failed", "0000000000000000"
		if remap {
			args = append(args, "--container-remap-root")
			wantID, wantChown, caps = "0", "chown=ok", full
		}
		r := asUser(t, "srun", append(args, "sh", "-c", script)...)
		mustSucceed(t, r)
		st := statusOf(r.stdout)
		want := map[string]string{
			"NoNewPrivs": "1", "Seccomp": "2", "CapInh": "0000000000000000", "CapPrm": caps,
			"CapEff": caps, "CapBnd": caps, "CapAmb": "0000000000000000",
		}
		for k, v := range want {
			if st[k] != v {
				t.Errorf("remap-root %v: %s = %q, want %q\n%s", remap, k, st[k], v, r)
			}
		}
		for _, w := range []string{wantChown, "owner=" + wantID, "id=" + wantID} {
			if !strings.Contains(r.stdout, w+"\n") {
				t.Errorf("remap-root %v: lacks %q (fake chown only under remap-root, owner unchanged):\n%s", remap, w, r)
			}
		}
		if strings.Contains(r.stdout, "userns="+nodeUserNS) {
			t.Errorf("remap-root %v: the task is in the node's user namespace:\n%s", remap, r)
		}
	}
	checkNothingLeft(t, nodes()[0])
}

// probeSockets lists the task's fds and sends a wire CONTAINER frame on
// every inherited socket: none may answer. With a socket path argument it
// first connects there itself (the control: the daemon answers anyone).
const probeSockets = `#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	static const char body[] = "job\0" "1\0" "step\0" "0\0" "uid\0" "0\0" "gid\0" "0\0" "image\0" "x";
	unsigned char frame[8 + sizeof(body)];
	int fds[256], n = 0, i, sockets = 0, answered = 0;
	struct dirent *e;
	DIR *d;

	if (argc > 1) {
		struct sockaddr_un a = { .sun_family = AF_UNIX };
		int c = socket(AF_UNIX, SOCK_STREAM, 0);
		strncpy(a.sun_path, argv[1], sizeof(a.sun_path) - 1);
		if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof(a)) < 0) {
			perror("control connect");
			return 2;
		}
	}
	d = opendir("/proc/self/fd");
	while (d && (e = readdir(d)) && n < 256)
		if (e->d_name[0] != '.' && atoi(e->d_name) != dirfd(d))
			fds[n++] = atoi(e->d_name);
	closedir(d);
	frame[0] = 0; frame[1] = 0;
	frame[2] = (unsigned char)((sizeof(body) + 4) >> 8); frame[3] = (unsigned char)(sizeof(body) + 4);
	frame[4] = 1; frame[5] = 2; frame[6] = 0; frame[7] = 0;
	memcpy(frame + 8, body, sizeof(body));
	for (i = 0; i < n; i++) {
		struct stat st;
		char path[64], target[256] = "";
		struct pollfd p = { .fd = fds[i], .events = POLLIN };
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fds[i]);
		readlink(path, target, sizeof(target) - 1);
		printf("fd %d -> %s\n", fds[i], target);
		if (fstat(fds[i], &st) < 0 || !S_ISSOCK(st.st_mode))
			continue;
		sockets++;
		if (send(fds[i], frame, sizeof(frame), MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
			continue;
		if (poll(&p, 1, 3000) == 1 && (p.revents & POLLIN)) {
			char buf[64];
			if (recv(fds[i], buf, sizeof(buf), MSG_DONTWAIT) > 0) {
				printf("ANSWERED fd %d\n", fds[i]);
				answered++;
			}
		}
	}
	printf("sockets=%d answered=%d\n", sockets, answered);
	return 0;
}
`

// No socket of the plugin's reaches the task: a CONTAINER frame sent on
// every socket the task inherited gets no answer (the plugin's root
// connection would make the daemon build a container as root).
func TestSecurityTaskInheritsNoDaemonSocket(t *testing.T) {
	node := nodes()[0]
	dir := readableTempDir(t)
	probe := compileStatic(t, dir, "probe", probeSockets)
	// Control: the probe sees an answer on a daemon connection of its own.
	r := run(t, cluster["NODE_EXEC"], node, "runuser", "-u", cluster["TEST_USER"], "--", probe, cluster["PODMAN_HPCD_SOCKET"])
	if !strings.Contains(r.stdout, "ANSWERED fd") {
		t.Fatalf("the probe does not see the daemon answer on its own connection:\n%s", r)
	}
	for _, extra := range [][]string{nil, {"--container-remap-root"}, {"--container-name=probe"}} {
		args := append([]string{"-N1", "-w", node, "--container-image=" + cluster["SMALL_IMAGE"], "--container-mounts=" + dir + ":/probe"}, extra...)
		r := asUser(t, "srun", append(args, "/probe/probe")...)
		mustSucceed(t, r)
		if !strings.Contains(r.stdout, "sockets=") || strings.Contains(r.stdout, "ANSWERED") {
			t.Errorf("%v: a socket the task inherited answers a CONTAINER frame:\n%s", extra, r)
		}
	}
	checkNothingLeft(t, node)
}

// euidProgram prints its effective uid: setuid root, it prints 0 where the
// setuid bit counts.
const euidProgram = `#include <stdio.h>
#include <unistd.h>
int main(void) { printf("euid=%d\n", (int)geteuid()); return 0; }
`

// A setuid-root program on a submount of a bound directory (a suid tmpfs
// the user's directory holds), or in the bound directory itself, runs as
// the user inside; every mount inside is nosuid, every one outside /dev
// nodev, and /dev's nodes still work.
func TestSecuritySetuidOnSubmountGainsNothing(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	user := cluster["TEST_USER"]
	uid := strings.TrimSpace(asUser(t, "id", "-u").stdout)
	home := strings.TrimSpace(asUser(t, "sh", "-c", "echo $HOME").stdout)
	dir := filepath.Join(home, fmt.Sprintf("e2e-suid-%d", time.Now().UnixNano()))
	mustSucceed(t, asUser(t, "mkdir", "-p", dir+"/sub"))
	prog := compileStatic(t, readableTempDir(t), "euid", euidProgram)
	t.Cleanup(func() {
		run(t, cluster["NODE_EXEC"], node, "umount", dir+"/sub")
		os.RemoveAll(dir)
	})
	mustSucceed(t, run(t, cluster["NODE_EXEC"], node, "sh", "-c",
		"mount -t tmpfs -o mode=0755 e2e-suid "+dir+"/sub && for p in "+dir+"/sub/prog "+dir+"/prog; do cp "+prog+" $p && chown 0:0 $p && chmod 4755 $p; done"))
	// Control: on the node, outside any container, the tmpfs's copy gives root.
	r := run(t, cluster["NODE_EXEC"], node, "runuser", "-u", user, "--", dir+"/sub/prog")
	if strings.TrimSpace(r.stdout) != "euid=0" {
		t.Fatalf("the setuid program gives no root on the node itself, the test proves nothing:\n%s", r)
	}
	r = asUser(t, "srun", "-N1", "-w", node, "--container-image="+cluster["SMALL_IMAGE"], "--container-mounts="+dir+":/d",
		"sh", "-c", "/d/sub/prog; /d/prog; echo x >/dev/null && echo devnull=ok; cat /proc/self/mountinfo")
	mustSucceed(t, r)
	if got := regexp.MustCompile(`euid=\d+`).FindAllString(r.stdout, -1); len(got) != 2 || got[0] != "euid="+uid || got[1] != "euid="+uid {
		t.Errorf("setuid programs on the bound directory and its submount ran as %q, want euid=%s for both:\n%s", got, uid, r)
	}
	if !strings.Contains(r.stdout, "devnull=ok\n") {
		t.Errorf("/dev/null does not work inside:\n%s", r)
	}
	sawSub := false
	for _, line := range strings.Split(r.stdout, "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || !regexp.MustCompile(`^\d+$`).MatchString(f[0]) {
			continue
		}
		mp, opts := f[4], ","+f[5]+","
		sawSub = sawSub || mp == "/d/sub"
		if !strings.Contains(opts, ",nosuid,") {
			t.Errorf("mount %s inside is not nosuid: %s", mp, line)
		}
		if mp != "/dev" && !strings.HasPrefix(mp, "/dev/") && !strings.Contains(opts, ",nodev,") {
			t.Errorf("mount %s inside is not nodev: %s", mp, line)
		}
	}
	if !sawSub {
		t.Errorf("the submount /d/sub is not inside:\n%s", r)
	}
	checkNothingLeft(t, node)
}

// A named container is removed when its job ends, by the plugin's job
// epilog (the test cluster has no Epilog script): gone from ps, and nothing
// of it left on the node.
func TestSecurityNamedContainerGoneAtJobEnd(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	r := inAllocation(t, `srun --container-image=`+cluster["SMALL_IMAGE"]+` --container-name=ends sh -c 'echo kept >/f'
srun --container-name=ends cat /f
echo "job=$SLURM_JOB_ID"`)
	mustSucceed(t, r)
	job := strings.TrimPrefix(regexpFind(r.stdout, `job=\d+`), "job=")
	if job == "" || !strings.Contains(r.stdout, "kept\n") {
		t.Fatalf("the named container did not keep its file between steps:\n%s", r)
	}
	removed := regexp.MustCompile(`msg="containers removed by request".* job=` + job + ` containers=1\b`)
	var ps string
	for i := 0; i < 100; i++ {
		ps = podmanHpcd(t, node, "ps").stdout
		if !strings.Contains(ps, "phpc-"+job+"-") && removed.MatchString(daemonLog(t, node)) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.Contains(ps, "phpc-"+job+"-") {
		t.Errorf("job %s's named container left after the job:\n%s", job, ps)
	}
	if !removed.MatchString(daemonLog(t, node)) {
		t.Errorf("the daemon's log has no removal of job %s's container by the job epilog", job)
	}
	checkNothingLeft(t, node)
}

// With the node's daemon down, the plugin's job epilog logs a line and
// does not fail: the node is not drained.
func TestSecurityJobEpilogWithDaemonDown(t *testing.T) {
	requireRoot(t)
	node := nodes()[len(nodes())-1]
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node))
	t.Cleanup(func() { mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node)) })
	r := srun(t, "-N1", "-w", node, "sh", "-c", "echo $SLURM_JOB_ID")
	mustSucceed(t, r)
	job := strings.TrimSpace(r.stdout)
	slurmdLog := filepath.Join(cluster["LAB"], "run", node, "slurmd.log")
	want := "podman-hpc: job " + job + " epilog: couldn't reach the node daemon"
	var logText string
	for i := 0; i < 100 && !strings.Contains(logText, want); i++ {
		time.Sleep(100 * time.Millisecond)
		b, _ := os.ReadFile(slurmdLog)
		logText = string(b)
	}
	if !strings.Contains(logText, want) {
		t.Errorf("slurmd's log lacks %q", want)
	}
	state := run(t, "sinfo", "-h", "-n", node, "-o", "%T").stdout
	if strings.Contains(state, "drain") {
		t.Errorf("node %s drained after the epilog with the daemon down: %s", node, state)
	}
}
