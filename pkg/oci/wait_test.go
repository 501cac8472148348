package oci

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// waitExit returns when the process exits, and not before: a running one
// is reported at the timeout, or when the context ends.
func TestWaitExit(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	defer unix.Close(pidfd)

	if err := waitExit(context.Background(), pidfd, 50*time.Millisecond); err == nil || !strings.Contains(err.Error(), "still running") {
		t.Errorf("a running process: %v, want still running", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := waitExit(ctx, pidfd, 0); err != context.DeadlineExceeded {
		t.Errorf("with the context ended: %v, want %v", err, context.DeadlineExceeded)
	}

	cmd.Process.Kill()
	if err := waitExit(context.Background(), pidfd, 10*time.Second); err != nil {
		t.Fatalf("after the kill: %v", err)
	}
	if !hasExited(pidfd) {
		t.Error("waitExit returned before the process exited")
	}
}

// A command's wait goes through the poller and still reaps it, with its
// exit status.
func TestWaitCmd(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("sh", "-c", "sleep 0.05; exit 3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err := waitCmd(context.Background(), cmd)
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 3 || err == nil {
		t.Errorf("waitCmd: %v, state %v; want exit status 3", err, cmd.ProcessState)
	}
}
