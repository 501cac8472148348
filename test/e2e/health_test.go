//go:build e2e

package e2e

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// healthCheck runs the cluster's HealthCheckProgram on node as slurmd runs
// it: as root, in the node's namespaces, with SLURMD_NODENAME alone in its
// environment.
func healthCheck(t *testing.T, node string, args ...string) result {
	t.Helper()
	return run(t, cluster["NODE_EXEC"], append([]string{node, "env", "-i", "SLURMD_NODENAME=" + node, cluster["HEALTHCHECK"]}, args...)...)
}

// nodeStateReason is the node's state and reason, as sinfo has them.
func nodeStateReason(t *testing.T, node string) (string, string) {
	t.Helper()
	r := run(t, "sinfo", "-h", "-N", "-n", node, "-o", "%T|%E")
	mustSucceed(t, r)
	state, reason, _ := strings.Cut(strings.TrimSpace(strings.Split(r.stdout, "\n")[0]), "|")
	return state, reason
}

// startDaemonNotified starts node's daemon with NOTIFY_SOCKET set to a
// socket of the test's, and returns what the daemon tells systemd within
// wait of its first message.
func startDaemonNotified(t *testing.T, node string, wait time.Duration) string {
	t.Helper()
	sock := filepath.Join(cluster["LAB"], "run", node, "health-notify.sock")
	os.Remove(sock)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { conn.Close(); os.Remove(sock) }()
	mustSucceed(t, runEnv(t, []string{"NOTIFY_SOCKET=" + sock}, cluster["NODE_DAEMON"], "start", node))
	var got []string
	buf := make([]byte, 4096)
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	for {
		n, err := conn.Read(buf)
		if err != nil {
			break
		}
		got = append(got, string(buf[:n]))
		conn.SetReadDeadline(time.Now().Add(wait))
	}
	return strings.Join(got, "\n")
}

// A node whose state_dir cannot take the POSIX ACLs every container's
// bundle needs (a ramfs) passed the old start-up probe and failed every job
// sent to it. Now: preflight names the missing feature and its fix, the
// daemon never tells systemd READY, status fails with the reason, the
// health check drains the node with it, and the next job runs on another
// node; fixed, the node is resumed by the check that drained it. A node
// drained by the admin stays drained, and one whose daemon is dead is
// drained too.
func TestHealthCheckDrainsANodeThatCannotRunContainers(t *testing.T) {
	requireRoot(t)
	if len(nodes()) < 2 {
		t.Skip("needs 2 nodes")
	}
	// The node Slurm picks first for a one-node job: were it not drained,
	// the next job would go there.
	bad := nodes()[0]
	state := filepath.Join(cluster["LAB"], "nodelocal", "state")
	if r := healthCheck(t, bad); r.code != 0 {
		t.Fatalf("the health check fails on a healthy node: %s", r)
	}
	if st, reason := nodeStateReason(t, bad); strings.HasPrefix(st, "drain") {
		t.Fatalf("%s drained before the test: %s", bad, reason)
	}

	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", bad))
	mustSucceed(t, run(t, cluster["NODE_EXEC"], bad, "mount", "-t", "ramfs", "-o", "mode=0711", "phpc-health-test", state))
	restored := false
	restore := func() {
		if restored {
			return
		}
		restored = true
		run(t, cluster["NODE_DAEMON"], "stop", bad)
		run(t, cluster["NODE_EXEC"], bad, "umount", "-l", state)
		mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", bad))
		if st, reason := nodeStateReason(t, bad); strings.HasPrefix(st, "drain") {
			run(t, "scontrol", "update", "nodename="+bad, "state=resume")
			t.Logf("resumed %s (%s)", bad, reason)
		}
	}
	t.Cleanup(restore)

	notified := startDaemonNotified(t, bad, 2*time.Second)
	if strings.Contains(notified, "READY=1") || !strings.Contains(notified, "STATUS=not ready: this node cannot run containers: POSIX ACLs on state_dir "+state) {
		t.Errorf("the broken node's daemon told systemd %q", notified)
	}

	pf := run(t, cluster["NODE_EXEC"], bad, cluster["PODMAN_HPCD"], "preflight", "--config", filepath.Join(cluster["LAB"], "etc", "podman-hpcd.conf"))
	if pf.code != 1 ||
		!regexp.MustCompile(`(?m)^FAIL  POSIX ACLs on state_dir `+regexp.QuoteMeta(state)+`: .*operation not supported\n      fix: put state_dir on a file system with POSIX ACLs`).MatchString(pf.stdout) ||
		!regexp.MustCompile(`(?m)^ok    a squashfs \(zstd\) in cache_dir mounted from a loop device`).MatchString(pf.stdout) ||
		!strings.Contains(pf.stderr, "checks failed: this node cannot run containers") {
		t.Errorf("preflight on the broken node: %s", pf)
	}

	st := podmanHpcd(t, bad, "status")
	if st.code != 1 || !strings.Contains(st.stdout, "\nUNAVAILABLE: this node cannot run containers: POSIX ACLs on state_dir ") {
		t.Errorf("status on the broken node: %s", st)
	}

	hc := healthCheck(t, bad)
	if hc.code != 1 {
		t.Errorf("the health check passed on the broken node: %s", hc)
	}
	s, reason := nodeStateReason(t, bad)
	if !strings.HasPrefix(s, "drain") || !strings.HasPrefix(reason, "podman-hpc: this node cannot run containers: POSIX ACLs on state_dir "+state) {
		t.Fatalf("%s is %s, reason %q; want drained for its ACLs\n%s", bad, s, reason, hc)
	}
	// NHC's check says the same.
	nhc := run(t, cluster["NODE_EXEC"], bad, "env", "-i", "bash", "-c",
		`die() { echo "die $*"; }; . "$1"; check_podman_hpc "$2"; echo "rc=$?"`, "nhc", cluster["NHC_CHECK"], cluster["HEALTHCHECK"])
	if !strings.Contains(nhc.stdout, "die 1 check_podman_hpc: podman-hpc: this node cannot run containers: POSIX ACLs on state_dir ") || !strings.Contains(nhc.stdout, "rc=1") {
		t.Errorf("NHC's check on the broken node: %s", nhc)
	}

	// The next job goes to another node, and runs.
	job := srun(t, "-N1", "-t", "1", "--container-image="+cluster["SMALL_IMAGE"], "sh", "-c", "echo $SLURMD_NODENAME")
	mustSucceed(t, job)
	if on := strings.TrimSpace(job.stdout); on == bad || on == "" {
		t.Errorf("the next job ran on %q", on)
	}

	// Fixed: the daemon is ready, and the check that drained the node
	// resumes it.
	restored = true
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", bad))
	mustSucceed(t, run(t, cluster["NODE_EXEC"], bad, "umount", state))
	if notified := startDaemonNotified(t, bad, 2*time.Second); !strings.Contains(notified, "READY=1") {
		t.Errorf("the fixed node's daemon told systemd %q", notified)
	}
	if r := healthCheck(t, bad); r.code != 0 {
		t.Errorf("the health check fails on the fixed node: %s", r)
	}
	if s, reason := nodeStateReason(t, bad); strings.HasPrefix(s, "drain") {
		t.Errorf("%s still %s after the fix: %s", bad, s, reason)
	}
	if r := podmanHpcd(t, bad, "status"); r.code != 0 || strings.Contains(r.stdout, "UNAVAILABLE") {
		t.Errorf("status on the fixed node: %s", r)
	}
}

// The health check lifts only its own drain: the admin's stays, and so
// does its reason. A node whose daemon is dead is drained (it would fail
// every job in milliseconds), and resumed once the daemon answers.
func TestHealthCheckLeavesTheAdminsDrain(t *testing.T) {
	requireRoot(t)
	node := nodes()[len(nodes())-1]
	t.Cleanup(func() {
		run(t, cluster["NODE_DAEMON"], "start", node)
		if st, _ := nodeStateReason(t, node); strings.HasPrefix(st, "drain") {
			run(t, "scontrol", "update", "nodename="+node, "state=resume")
		}
	})
	mustSucceed(t, run(t, "scontrol", "update", "nodename="+node, "state=drain", "reason=admin: new DIMMs"))
	if r := healthCheck(t, node); r.code != 0 {
		t.Errorf("health check: %s", r)
	}
	if s, reason := nodeStateReason(t, node); !strings.HasPrefix(s, "drain") || reason != "admin: new DIMMs" {
		t.Errorf("the admin's drain became %s %q", s, reason)
	}
	// Unhealthy too: still the admin's reason, theirs to lift.
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "stop", node))
	if r := healthCheck(t, node); r.code != 1 {
		t.Errorf("health check with the daemon dead: %s", r)
	}
	if _, reason := nodeStateReason(t, node); reason != "admin: new DIMMs" {
		t.Errorf("the admin's reason became %q", reason)
	}
	mustSucceed(t, run(t, "scontrol", "update", "nodename="+node, "state=resume"))

	// The daemon dead: drained, and why.
	r := healthCheck(t, node)
	s, reason := nodeStateReason(t, node)
	if r.code != 1 || !strings.HasPrefix(s, "drain") || !strings.HasPrefix(reason, "podman-hpc: cannot reach podman-hpcd at "+cluster["PODMAN_HPCD_SOCKET"]) {
		t.Errorf("with the daemon dead: %s, reason %q\n%s", s, reason, r)
	}
	if c := healthCheck(t, node, "--check"); c.code != 1 || !strings.HasPrefix(c.stdout, "cannot reach podman-hpcd") {
		t.Errorf("--check with the daemon dead: %s", c)
	}
	mustSucceed(t, run(t, cluster["NODE_DAEMON"], "start", node))
	if r := healthCheck(t, node); r.code != 0 {
		t.Errorf("health check with the daemon back: %s", r)
	}
	if s, reason := nodeStateReason(t, node); strings.HasPrefix(s, "drain") {
		t.Errorf("%s still %s with its daemon back: %q", node, s, reason)
	}
}
