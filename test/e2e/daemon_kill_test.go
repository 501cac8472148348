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

// A daemon killed while it makes an image's squashfs (issue 24, item 7):
// the squasher (tar2sqfs, as a pull streams its layers; mksquashfs
// without squashfs-tools-ng) must die with it. mksquashfs once wrote on for no one after a SIGKILL (420 MB into the
// cache, 402 MB into tmp) until the next start cleaned up; a stop as
// systemd's KillMode=process does it (SIGTERM to the daemon alone, SIGKILL
// after a while) could leave it too. Every helper of the daemon dies with
// it, nothing writes into the cache afterwards, and the next start removes
// the half-made files.
func TestDaemonKilledWhileSquashing(t *testing.T) {
	requireRoot(t)
	node := nodes()[0]
	layout, err := filepath.Abs("../../build/images/mpi")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(layout + "/index.json"); err != nil {
		t.Skipf("no mpi image layout: %v", err)
	}
	image := "oci:" + layout + ":latest"
	// gzip -9: squashing takes seconds over the image (zstd:3, the
	// default, a fifteenth of that), time to catch it at work.
	conf := filepath.Join(cluster["LAB"], "etc", "podman-hpcd.conf")
	orig, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, configWith(orig, "compression = gzip:9"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		os.WriteFile(conf, orig, 0o644)
		run(t, cluster["NODE_DAEMON"], "stop", node)
		run(t, cluster["NODE_DAEMON"], "start", node)
		podmanHpcd(t, node, "rmi", image)
	})
	restart := func() {
		mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node))
		mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node))
	}
	restart()
	cache := filepath.Join(cluster["LAB"], "nodelocal", "images")
	for _, tc := range []struct {
		name     string
		stop     func(pid int)
		graceful bool
	}{
		{"SIGKILL", func(pid int) { syscall.Kill(pid, syscall.SIGKILL) }, false},
		// What systemctl stop or restart does with KillMode=process
		// (contrib/slurm/podman-hpcd.service): SIGTERM to the daemon
		// alone, SIGKILL if it outlives its stop timeout; node-daemon
		// stop waits 10 s.
		{"stop, KillMode=process", func(int) { mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node)) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := podmanHpcd(t, node, "rmi", image); r.code != 0 && !strings.Contains(r.stderr, "not in the cache") {
				t.Fatalf("rmi: %s", r)
			}
			daemon := daemonPid(t, node)
			pull := exec.Command(cluster["NODE_EXEC"], node, cluster["PODMAN_HPCD"], "pull", "--socket", cluster["PODMAN_HPCD_SOCKET"], image)
			pull.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var pullOut strings.Builder
			pull.Stdout, pull.Stderr = &pullOut, &pullOut
			if err := pull.Start(); err != nil {
				t.Fatal(err)
			}
			defer syscall.Kill(-pull.Process.Pid, syscall.SIGKILL)
			var helpers map[int]string
			pulled := make(chan struct{})
			go func() { pull.Wait(); close(pulled) }()
			if !waitFor(90*time.Second, func() bool {
				select {
				case <-pulled:
					t.Fatalf("the pull ended before its squasher was seen: %s", pullOut.String())
				default:
				}
				helpers = helpersOf(daemon)
				for _, comm := range helpers {
					if comm == "mksquashfs" || comm == "tar2sqfs" {
						return true
					}
				}
				return false
			}) {
				syscall.Kill(-pull.Process.Pid, syscall.SIGKILL)
				<-pulled
				t.Fatalf("no mksquashfs or tar2sqfs of podman-hpcd (pid %d) within 90s; the pull: %s", daemon, pullOut.String())
			}
			// Let it write for a moment.
			time.Sleep(time.Second)
			helpers = helpersOf(daemon)
			t.Logf("stopping podman-hpcd %d with its helpers %v", daemon, helpers)
			stopped := time.Now()
			tc.stop(daemon)
			if !waitFor(15*time.Second, func() bool { return !runningAs(daemon, "podman-hpcd") }) {
				t.Fatalf("podman-hpcd %d still runs 15s after it was stopped", daemon)
			}
			t.Logf("podman-hpcd gone %s after it was stopped", time.Since(stopped).Round(100*time.Millisecond))
			if !waitFor(5*time.Second, func() bool {
				for pid, comm := range helpers {
					if runningAs(pid, comm) {
						return false
					}
				}
				return true
			}) {
				for pid, comm := range helpers {
					if runningAs(pid, comm) {
						t.Errorf("the daemon's %s (pid %d) outlived it", comm, pid)
					}
				}
			}
			if held := openUnder(t, node, cache); len(held) > 0 {
				t.Errorf("open in the cache after the daemon's end: %q", held)
			}
			before := treeBytes(t, node, cache)
			time.Sleep(2 * time.Second)
			if after := treeBytes(t, node, cache); after != before {
				t.Errorf("the cache grew from %s to %s bytes after the daemon's end", before, after)
			}
			left := onNode(t, node, "", `ls -A "$1/tmp"; find "$1/images" -name '.new-*'`, cache).stdout
			switch {
			case strings.TrimSpace(left) != "":
			case tc.graceful:
				// SIGTERM: the daemon removed the pull's files on its
				// way out (a streamed pull has only its blobs and the
				// squashfs to remove); the next start has nothing to do.
				t.Logf("the daemon removed its half-made files itself")
			default:
				t.Fatalf("the killed daemon left nothing half-made in %s: the kill came too late to test the clean-up", cache)
			}
			mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node))
			// node-daemon start may return on the killed daemon's
			// socket; the new one answers once it has opened (and
			// cleaned) the cache.
			if !waitFor(20*time.Second, func() bool { return podmanHpcd(t, node, "status").code == 0 }) {
				t.Fatalf("the restarted podman-hpcd does not answer")
			}
			if left := onNode(t, node, "", `ls -A "$1/tmp"; find "$1/images" -name '.new-*'`, cache).stdout; strings.TrimSpace(left) != "" {
				t.Errorf("after the next start, half-made files are left in %s:\n%s", cache, left)
			}
			<-pulled
			if pull.ProcessState.Success() {
				t.Errorf("the pull succeeded across the daemon's end: %s", pullOut.String())
			}
		})
	}
}

// daemonPid is node's podman-hpcd's pid.
func daemonPid(t *testing.T, node string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cluster["LAB"], "run", node, "podman-hpcd.pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// helpersOf lists the processes parent started, and theirs, by pid and
// comm, but for the containers' inits and what runs in them (which
// outlive a daemon on purpose, to be adopted).
func helpersOf(parent int) map[int]string {
	type proc struct {
		ppid int
		comm string
	}
	all := map[int]proc{}
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open {
			continue
		}
		f := strings.Fields(s[end+1:])
		if len(f) < 2 {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		ppid, _ := strconv.Atoi(f[1])
		all[pid] = proc{ppid, s[open+1 : end]}
	}
	l := map[int]string{}
	for pid, p := range all {
		for q, hops := p, 0; q.ppid > 1 && hops < 64; q, hops = all[q.ppid], hops+1 {
			if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", q.ppid)); strings.HasPrefix(string(cmd), "/.podman-hpc/init") {
				break
			}
			if q.ppid == parent {
				if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); !strings.HasPrefix(string(cmd), "/.podman-hpc/init") {
					l[pid] = p.comm
				}
				break
			}
		}
	}
	return l
}

// runningAs: pid runs (not a zombie) and is still comm.
func runningAs(pid int, comm string) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || s[open+1:end] != comm {
		return false
	}
	f := strings.Fields(s[end+1:])
	return len(f) > 0 && f[0] != "Z"
}

// openUnder lists the host's processes' open files on node's file system
// dir (the nodes' tmpfs share their paths).
func openUnder(t *testing.T, node, dir string) []string {
	t.Helper()
	dev := strings.TrimSpace(onNode(t, node, "", `stat -c %d "$1"`, dir).stdout)
	var l []string
	fds, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range fds {
		var st syscall.Stat_t
		if target, err := os.Readlink(fd); err == nil && strings.HasPrefix(target, dir+"/") &&
			syscall.Stat(fd, &st) == nil && strconv.FormatUint(st.Dev, 10) == dev {
			l = append(l, fd+" -> "+target)
		}
	}
	return l
}

// treeBytes is the bytes of the files under dir on node (du -sb).
func treeBytes(t *testing.T, node, dir string) string {
	t.Helper()
	return strings.Fields(onNode(t, node, "", `du -sb "$1"`, dir).stdout + " ?")[0]
}
