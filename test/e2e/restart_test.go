//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// An upgrade restarts the daemon while a job runs: the step running then
// goes on in its container, the named container made before the restart
// keeps its writes and is attached (same mount namespace) by the job's
// next steps, the new daemon lists it, the node's next step works, and at
// the job's end nothing is left. Under remap-root the tasks' own
// namespaces are adopted too: a tmpfs a task mounted is still there.
func TestRestartAdoptsContainers(t *testing.T) {
	requireRoot(t)
	for _, remap := range []bool{false, true} {
		t.Run(map[bool]string{false: "own-ids", true: "remap-root"}[remap], func(t *testing.T) { restartAdopts(t, remap) })
	}
}

func restartAdopts(t *testing.T, remap bool) {
	node := nodes()[0]
	dir := readableTempDir(t)
	os.Chmod(dir, 0o777)
	img := cluster["SMALL_IMAGE"]
	opt, mount, mounted := "", "", ""
	if remap {
		opt, mount, mounted = " --container-remap-root", "mkdir /tmp/m && mount -t tmpfs none /tmp/m && echo mounted >/tmp/m/f; ", "mounted"
	}
	script := `#!/bin/sh
srun --container-image=` + img + opt + ` --container-name=up --container-mounts=` + dir + `:` + dir + ` sh -c '` + mount + `echo before >/tmp/marker; echo kept >/rootmark; readlink /proc/self/ns/mnt' >ns1
srun --container-name=up sh -c 'touch ` + dir + `/started; sleep 4; echo during:$(cat /tmp/marker)' >during 2>during.err &
while [ ! -e started ]; do sleep 0.1; done
touch ready
while [ ! -e restarted ]; do sleep 0.1; done
srun --overlap --container-name=up sh -c 'echo after:$(cat /tmp/marker):$(cat /rootmark):$(cat /tmp/m/f 2>/dev/null); readlink /proc/self/ns/mnt' >after 2>after.err
srun --overlap --container-image=` + img + ` sh -c 'grep ^ID= /etc/os-release' >next 2>next.err
wait
echo done >finished
`
	path := filepath.Join(dir, "job.sh")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := asUser(t, "sbatch", "--parsable", "-N1", "-w", node, "-o", filepath.Join(dir, "job.out"), "-D", dir, path)
	mustSucceed(t, r)
	job := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	t.Cleanup(func() { run(t, "scancel", job) })
	read := func(name string) string {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b))
	}
	waitFor := func(name string, d time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
				return
			}
			if jobEnded(t, job) {
				break
			}
		}
		t.Fatalf("job %s: no %s; its output: %s", job, name, read("job.out"))
	}
	waitFor("ready", time.Minute)
	// The upgrade, while step 1 sleeps in the named container.
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node))
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node))
	// The socket is there (node-daemon start returns) a moment before the
	// new daemon has looked at what the old one left.
	adopted := false
	for deadline := time.Now().Add(10 * time.Second); !adopted && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		adopted = strings.Contains(daemonLog(t, node), "container adopted from the previous daemon")
	}
	if !adopted {
		t.Errorf("the new daemon adopted nothing")
	}
	// The new daemon knows the named container.
	ps := run(t, cluster["NODE_EXEC"], node, cluster["PODMAN_HPCD"], "status", "--socket", cluster["PODMAN_HPCD_SOCKET"])
	if !strings.Contains(ps.stdout, "phpc-"+job+"-n-up") {
		t.Errorf("status after the restart does not list the named container:\n%s", ps)
	}
	// Its writable layer is the new daemon's now: kept, not cleaned.
	if r := onNode(t, node, "", `ls "$1"`, writableDir()); strings.Count(r.stdout, ".ext4") != 1 {
		t.Errorf("writable_dir after the restart: %s, want the named container's layer", r)
	}
	os.WriteFile(filepath.Join(dir, "restarted"), nil, 0o644)
	waitFor("finished", time.Minute)

	// (srun's own notes, "step creation temporarily disabled" when
	// the machine is slow to free the first step, go to during.err.)
	if got := read("during"); got != "during:before" {
		t.Errorf("the step running across the restart: %q; its stderr: %q", got, read("during.err"))
	}
	after := strings.Fields(read("after"))
	if len(after) != 2 || after[0] != "after:before:kept:"+mounted || after[1] != read("ns1") {
		t.Errorf("the named container after the restart: %q, want after:before:kept:%s (its writable root's file kept) and its mount namespace %s", after, mounted, read("ns1"))
	}
	if got := read("next"); got != "ID=podman-hpc-small" {
		t.Errorf("the next step after the restart: %q", got)
	}
	for deadline := time.Now().Add(30 * time.Second); !jobEnded(t, job) && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	checkNothingLeft(t, node)
}

// A job that ends while its node's daemon is down (an upgrade, a crash)
// leaves no named container behind: the epilog records the job's end, and
// the next daemon removes the container it adopted (its init sits in the
// job's cgroup, which Slurm does not end).
func TestJobEndedWhileDaemonDown(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := readableTempDir(t)
	script := dir + "/job.sh"
	os.WriteFile(script, []byte("#!/bin/sh\n"+
		"srun --container-image="+cluster["SMALL_IMAGE"]+" --container-name=down true\n"+
		"while [ ! -e "+dir+"/go ]; do sleep 0.1; done\n"), 0o755)
	r := asUser(t, "sbatch", "--parsable", "-N1", "-w", node, "-o", "/dev/null", "-D", dir, script)
	mustSucceed(t, r)
	job := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	var pid string
	for i := 0; i < 100 && pid == ""; i++ {
		time.Sleep(100 * time.Millisecond)
		pid = strings.TrimSpace(onNode(t, node, "", `for p in $(pgrep -f '^/[.]podman-hpc/init'); do grep -qsF "$1/" /proc/$p/mountinfo && echo $p; done`, cluster["LAB"]).stdout)
	}
	if pid == "" {
		t.Fatal("the named container never ran")
	}
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node))
	restarted := false
	defer func() {
		if !restarted {
			run(t, cluster["NODE_DAEMON"], "start", node)
		}
	}()
	os.WriteFile(dir+"/go", nil, 0o644)
	for i := 0; i < 300 && !jobEnded(t, job); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if !jobEnded(t, job) {
		t.Fatalf("job %s did not end", job)
	}
	// Under proctrack/cgroup the init sits in the job's cgroup: the
	// epilog, with no daemon to ask, kills it there, so that nothing of
	// the job runs until a daemon comes back (review 17).
	if conf, _ := os.ReadFile(cluster["LAB"] + "/etc/slurm.conf"); strings.Contains(string(conf), "ProctrackType=proctrack/cgroup") {
		alive := func() bool { _, err := os.Stat("/proc/" + pid); return err == nil }
		for i := 0; i < 50 && alive(); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if alive() {
			t.Errorf("the ended job's container init %s runs on while no daemon runs", pid)
		}
	}
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node))
	restarted = true
	checkNothingLeft(t, node)
	if ps := podmanHpcd(t, node, "ps").stdout; strings.Contains(ps, "phpc-"+job+"-n-down") {
		t.Errorf("the ended job's named container is still listed:\n%s", ps)
	}
}

// A job whose epilog reaches the daemon just as it stops (a restart, a
// crash: the request accepted, never answered) leaves no named container
// behind: the epilog asks again, and the next daemon, which adopted the
// container, removes it. Before, the epilog gave up on the dropped
// connection and recorded nothing, and the container outlived its job.
func TestJobEndedAsDaemonStops(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	dir := readableTempDir(t)
	script := dir + "/job.sh"
	os.Mkdir(dir+"/marks", 0o777)
	os.Chmod(dir+"/marks", 0o777) // the job's user writes there
	os.WriteFile(script, []byte("#!/bin/sh\n"+
		"srun --container-image="+cluster["SMALL_IMAGE"]+" --container-name=dropped true\n"+
		"touch "+dir+"/marks/ran\n"+
		"while [ ! -e "+dir+"/go ]; do sleep 0.1; done\n"), 0o755)
	r := asUser(t, "sbatch", "--parsable", "-N1", "-w", node, "-o", "/dev/null", "-D", dir, script)
	mustSucceed(t, r)
	job := strings.TrimSpace(strings.Split(r.stdout, ";")[0])
	name := "phpc-" + job + "-n-dropped"
	// Its step done (its end talks to the daemon too), the container kept.
	for i := 0; !fileExists(dir+"/marks/ran") || !strings.Contains(podmanHpcd(t, node, "ps").stdout, name); i++ {
		if i == 300 {
			t.Fatal("the named container never ran")
		}
		time.Sleep(100 * time.Millisecond)
	}
	pidfile := filepath.Join(cluster["LAB"], "run", node, "podman-hpcd.pid")
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	restarted := false
	defer func() {
		if !restarted {
			syscall.Kill(pid, syscall.SIGCONT)
			run(t, cluster["NODE_DAEMON"], "start", node)
		}
	}()
	// The daemon holds still; the job's epilog connects and waits in its
	// listen queue.
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/go", nil, 0o644)
	sock := filepath.Join(cluster["LAB"], "nodelocal", "podman-hpcd.sock")
	queued := func() bool {
		out := onNode(t, node, "", `ss -xlnH src "$1" | awk '{print $3}'`, sock).stdout
		n, _ := strconv.Atoi(strings.TrimSpace(out))
		return n > 0
	}
	for i := 0; !queued(); i++ {
		if i == 300 {
			t.Fatal("the job's epilog never connected")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// It dies with the request unanswered; the next one starts at once.
	syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
		time.Sleep(100 * time.Millisecond)
	}
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node))
	restarted = true
	for i := 0; i < 300 && !jobEnded(t, job); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	for i := 0; i < 100 && strings.Contains(podmanHpcd(t, node, "ps").stdout, name); i++ {
		time.Sleep(100 * time.Millisecond)
	}
	if ps := podmanHpcd(t, node, "ps").stdout; strings.Contains(ps, name) {
		t.Fatalf("the ended job's named container is still there:\n%s", ps)
	}
	checkNothingLeft(t, node)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
