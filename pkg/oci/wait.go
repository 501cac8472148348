package oci

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"

	"golang.org/x/sys/unix"
)

// waitExit waits until the process behind pidfd has exited (a zombie has),
// at most timeout (0: no limit) or until ctx ends. It parks in the Go
// runtime's poller instead of blocking a thread in poll(2) or waitid(2):
// the runtime's monitor polls every 20 µs while a thread blocks in a
// system call, and the daemon can go quiet while the runtime works.
func waitExit(ctx context.Context, pidfd int, timeout time.Duration) error {
	f, err := pollablePidfd(pidfd)
	if err != nil {
		return pollExit(ctx, pidfd, timeout)
	}
	defer f.Close()
	if timeout > 0 {
		f.SetReadDeadline(time.Now().Add(timeout))
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return pollExit(ctx, pidfd, timeout)
	}
	err = rc.Read(func(fd uintptr) bool { return hasExited(int(fd), 0) })
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("still running after %s", timeout)
	default:
		return pollExit(ctx, pidfd, timeout) // the poller refused the pidfd
	}
}

// pollablePidfd returns a non-blocking copy of pidfd for the poller.
func pollablePidfd(pidfd int) (*os.File, error) {
	dup, err := unix.FcntlInt(uintptr(pidfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return nil, err
	}
	return os.NewFile(uintptr(dup), "pidfd"), nil
}

// hasExited polls pidfd for up to ms milliseconds: a pidfd is readable
// once its process has exited.
func hasExited(pidfd, ms int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, ms)
	return err == nil && n > 0
}

// pollExit is waitExit without the runtime's poller.
func pollExit(ctx context.Context, pidfd int, timeout time.Duration) error {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for !hasExited(pidfd, 100) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return fmt.Errorf("still running after %s", timeout)
		}
	}
	return nil
}

// waitCmd waits for a started command in the poller (waitExit), then reaps
// it with Wait, which no longer blocks.
func waitCmd(ctx context.Context, cmd *exec.Cmd) error {
	if pidfd, err := unix.PidfdOpen(cmd.Process.Pid, 0); err == nil {
		waitExit(ctx, pidfd, 0)
		unix.Close(pidfd)
	}
	return cmd.Wait()
}
