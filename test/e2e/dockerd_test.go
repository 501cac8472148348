//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// privateDockerd starts Debian's dockerd (and the containerd it starts
// itself) in node's namespaces, with everything under a node-local
// directory: its socket (root's and group's, 0660), data, state and pid
// files, and no bridge, iptables or NAT, so that nothing of it is seen
// outside the node. It is stopped by pid, and its directory removed, when
// the test ends. It returns the socket and the docker command for it.
func privateDockerd(t *testing.T, node, group string) (string, []string) {
	t.Helper()
	dockerd, err := exec.LookPath("dockerd")
	if err != nil {
		t.Skip("dockerd not installed: make deps installs Debian's docker.io")
	}
	docker, err := exec.LookPath("docker")
	if err != nil {
		t.Skip("docker (the client) not installed: make deps installs Debian's docker.io")
	}
	dir := filepath.Join(cluster["LAB"], "nodelocal", fmt.Sprintf("dockerd-%d", os.Getpid()))
	sock := dir + "/docker.sock"
	cli := []string{docker, "-H", "unix://" + sock}
	mustSucceed(t, onNode(t, node, "", `mkdir -p "$1" && echo '{}' >"$1/daemon.json"`, dir))
	log, err := os.Create(filepath.Join(t.TempDir(), "dockerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	// node-exec enters the namespaces and execs: the pid is dockerd's.
	cmd := exec.Command(cluster["NODE_EXEC"], node, dockerd, "--config-file", dir+"/daemon.json",
		"-H", "unix://"+sock, "--group", group, "--data-root", dir+"/data", "--exec-root", dir+"/exec",
		"--pidfile", dir+"/dockerd.pid", "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { stopDockerd(t, node, dir, cmd.Process.Pid, exited) })
	for i := 0; ; i++ {
		v := onNode(t, node, "", `"$@" version`, cli...)
		if v.code == 0 {
			break
		}
		select {
		case <-exited:
			i = 300
		default:
		}
		if i >= 300 {
			b, _ := os.ReadFile(log.Name())
			lines := strings.Split(strings.TrimSpace(string(b)), "\n")
			t.Fatalf("dockerd did not come up in node %s: %s\ndockerd's log ends:\n%s", node, v, strings.Join(lines[max(0, len(lines)-5):], "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return sock, cli
}

// stopDockerd stops dockerd (SIGTERM, SIGKILL after ten seconds) and the
// containerd it started, if that outlives it, both by pid; unmounts what
// they left under dir and removes it.
func stopDockerd(t *testing.T, node, dir string, pid int, exited chan struct{}) {
	containerd := 0
	if b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "root", dir, "exec/containerd/containerd.pid")); err == nil {
		containerd, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		t.Errorf("dockerd (pid %d) ignored SIGTERM for 10s: killed", pid)
		syscall.Kill(pid, syscall.SIGKILL)
		<-exited
	}
	// Its containerd, unless gone or its pid reused since.
	if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", containerd)); containerd > 0 && strings.Contains(string(b), dir+"/") {
		t.Errorf("containerd (pid %d) outlived dockerd: killed", containerd)
		syscall.Kill(containerd, syscall.SIGKILL)
	}
	r := onNode(t, node, "", `awk -v d="$1/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l; rm -rf "$1"`, dir)
	if r.code != 0 {
		t.Errorf("removing %s: %s", dir, r)
	}
}

// withConfigLine sets line ("key = value") in every daemon's config until
// the test ends.
func withConfigLine(t *testing.T, line string) {
	t.Helper()
	conf := filepath.Join(cluster["LAB"], "etc", "podman-hpcd.conf")
	orig, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, configWith(orig, line), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(conf, orig, 0o644)
		restartDaemons(t)
	})
	restartDaemons(t)
}

// dockerd://IMAGE through a real Docker daemon: a user its socket lets in
// (its group) runs an image loaded into it; one it does not is refused
// with the cause, even with the image already in the node's cache, and
// nothing is left behind.
func TestDockerdImage(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skipf("%q not found in PATH", "skopeo")
	}
	if out, err := exec.Command("getent", "passwd", nssUser).Output(); err != nil || len(out) == 0 {
		t.Skipf("no second test user %s: run make deps", nssUser)
	}
	node := nodes()[0]
	group := strings.TrimSpace(asUser(t, "id", "-gn").stdout)
	if r := run(t, "id", "-Gn", nssUser); r.code != 0 || strings.Contains(" "+strings.TrimSpace(r.stdout)+" ", " "+group+" ") {
		t.Fatalf("%s must not be in group %s: %s", nssUser, group, r)
	}
	sock, docker := privateDockerd(t, node, group)

	name := fmt.Sprintf("phpc-e2e/dockerd-%d:1", time.Now().UnixNano())
	archive := filepath.Join(readableTempDir(t), "small.tar")
	mustSucceed(t, run(t, "skopeo", "copy", "-q", "oci:../../build/images/small:latest", "docker-archive:"+archive+":"+name))
	mustSucceed(t, run(t, cluster["NODE_EXEC"], append(append([]string{node}, docker...), "load", "-q", "-i", archive)...))
	withConfigLine(t, "docker_socket = "+sock)

	r := asUser(t, "srun", "-w", node, "--container-image=dockerd://"+name, "cat", "/etc/os-release")
	mustSucceed(t, r)
	if !strings.Contains(r.stdout, "ID=podman-hpc-small\n") {
		t.Errorf("/etc/os-release of the Docker daemon's image: %q", r.stdout)
	}
	checkNothingLeft(t, node)

	r = run(t, "runuser", "-u", nssUser, "--", "env", "SLURM_CONF="+cluster["SLURM_CONF"], "srun", "-w", node,
		"--container-image=dockerd://"+name, "cat", "/etc/os-release")
	t.Logf("a user not in %s sees: %s", group, r.stderr)
	if r.code == 0 || strings.Contains(r.stdout, "podman-hpc-small") ||
		!strings.Contains(r.stderr, "dockerd://"+name+": permission denied: you may not use the node's Docker daemon ("+sock+")") {
		t.Errorf("a user the Docker socket refuses: %s", r)
	}
	checkNothingLeft(t, node)
	if r := onNode(t, node, "", "ip link show docker0"); r.code == 0 {
		t.Errorf("dockerd made a docker0 bridge: %s", r.stdout)
	}
}
