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
	// A copy, non-blocking, for the poller to watch (pidfds poll readable
	// once their process has exited).
	dup, err := unix.FcntlInt(uintptr(pidfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return err
	}
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return err
	}
	f := os.NewFile(uintptr(dup), "pidfd")
	defer f.Close()
	if timeout > 0 {
		f.SetReadDeadline(time.Now().Add(timeout))
	}
	stop := context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	err = rc.Read(func(fd uintptr) bool { return hasExited(int(fd)) })
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("still running after %s", timeout)
	default:
		return err
	}
}

// hasExited says whether the process behind pidfd has exited, without
// waiting.
func hasExited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, 0)
	return err == nil && n > 0
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
