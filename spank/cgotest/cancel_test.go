package cgotest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeSqueue writes a script that records its argv, environment and
// whether it holds descriptor 100 into dir/rec, then runs body.
func fakeSqueue(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "squeue")
	script := fmt.Sprintf("#!/bin/sh\n{ echo \"args $*\"; env | sort | sed 's/^/env /'; [ -e /proc/$$/fd/100 ] && echo leaked-fd; } >%s/rec\n%s\n", dir, body)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// What squeue says decides: a job that ends, ended or was requeued has
// ended; a running or suspended one, a word the plugin does not know, no
// answer or a failed squeue do not (the check is skipped, as before it).
func TestJobEndedByState(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body  string
		ended bool
	}{
		{"echo RUNNING", false},
		{"echo SUSPENDED", false},
		{"echo CANCELLED", true},
		{"echo COMPLETING", true},
		{"echo TIMEOUT", true},
		{"echo PENDING", true},
		{"echo REQUEUED", true},
		{"echo SOMETHING_NEW", false},
		{"printf CANCELLED", false}, // no whole line
		{"true", false},
		{"echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1", false},
		{"echo CANCELLED; exit 1", false},
	} {
		dir := t.TempDir()
		if got := JobEnded(fakeSqueue(t, dir, tc.body), 42, -1, 5*time.Second); got != tc.ended {
			t.Errorf("squeue doing %q: ended %v, want %v", tc.body, got, tc.ended)
		}
	}
	if JobEnded("/nonexistent/squeue", 42, -1, time.Second) || JobEnded("squeue", 42, -1, time.Second) {
		t.Error("a missing or relative squeue: ended")
	}
}

// squeue is asked about the job alone, in every state, for the state only;
// it gets SLURM_CONF and nothing else of the environment, and none of the
// caller's descriptors.
func TestJobEndedAsksSqueueAlone(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("SLURM_CONF", "/etc/slurm-test/slurm.conf")
	t.Setenv("PHPC_SECRET", "of-slurmd")
	fd, err := syscall.Open(filepath.Join(dir, "held"), syscall.O_CREAT|syscall.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Dup2(fd, 100); err != nil { // not close-on-exec
		t.Fatal(err)
	}
	defer syscall.Close(100)
	if !JobEnded(fakeSqueue(t, dir, "echo CANCELLED"), 4242, -1, 5*time.Second) {
		t.Fatal("CANCELLED: not ended")
	}
	b, err := os.ReadFile(filepath.Join(dir, "rec"))
	if err != nil {
		t.Fatal(err)
	}
	rec := string(b)
	if !strings.Contains(rec, "args --noheader --states=all --format=%T --jobs=4242\n") {
		t.Errorf("squeue's arguments:\n%s", rec)
	}
	if !strings.Contains(rec, "env SLURM_CONF=/etc/slurm-test/slurm.conf\n") || strings.Contains(rec, "PHPC_SECRET") {
		t.Errorf("squeue's environment:\n%s", rec)
	}
	if strings.Contains(rec, "leaked-fd") {
		t.Errorf("squeue holds the caller's descriptor 100:\n%s", rec)
	}
}

// A squeue that does not answer is killed at the limit; one that answers
// after the daemon did is not waited for.
func TestJobEndedBounded(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "pid")
	squeue := fakeSqueue(t, dir, "echo $$ >"+pidFile+"; exec sleep 100")
	start := time.Now()
	if JobEnded(squeue, 42, -1, 500*time.Millisecond) {
		t.Error("a squeue that never answers: ended")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("a squeue that never answers held the check %s (limit 500ms)", took)
	}
	b, _ := os.ReadFile(pidFile)
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		t.Fatalf("pid file: %q", b)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("squeue (pid %d) still runs after the check", pid)
	}

	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(p[0])
	defer syscall.Close(p[1])
	syscall.Write(p[1], []byte("x"))
	start = time.Now()
	if JobEnded(fakeSqueue(t, t.TempDir(), "sleep 100; echo CANCELLED"), 42, p[0], 10*time.Second) {
		t.Error("the daemon answered first: ended")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the daemon answered first, but the check took %s", took)
	}
}

// The default squeue is the one beside the running program's directory's
// parent: PREFIX/bin/squeue for PREFIX/sbin/slurmstepd.
func TestDefaultSqueue(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := DefaultSqueue()
	if want := filepath.Join(filepath.Dir(filepath.Dir(exe)), "bin", "squeue"); !ok || got != want {
		t.Errorf("default squeue %q (%v), want %q", got, ok, want)
	}
}

// A small job's nodes ask every 3 s; a large one's less often, so that
// slurmctld gets at most 50 asks a second from one waiting step, and never
// less than once a minute.
func TestCancelInterval(t *testing.T) {
	for _, tc := range []struct {
		nodes uint32
		want  time.Duration
	}{{0, 3 * time.Second}, {1, 3 * time.Second}, {150, 3 * time.Second}, {500, 10 * time.Second}, {2000, 40 * time.Second}, {1 << 20, time.Minute}} {
		if got := CancelInterval(tc.nodes); got != tc.want {
			t.Errorf("%d nodes: every %v, want %v", tc.nodes, got, tc.want)
		}
	}
}
