package oci

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// killInit kills the container's init and waits until it has exited:
// through pidfd when given, else through the pid the runtime's state names
// (a container that is not running, or not known, has nothing to kill).
func (r *Runtime) killInit(ctx context.Context, id string, pidfd int) error {
	if pidfd <= 0 {
		st, err := r.State(ctx, id)
		if err != nil || st.Pid <= 0 || st.Status == "stopped" {
			return nil
		}
		fd, err := unix.PidfdOpen(st.Pid, 0)
		if err != nil {
			return nil // gone already
		}
		defer unix.Close(fd)
		pidfd = fd
	}
	return killWait(ctx, pidfd, 10*time.Second)
}

// killWait sends SIGKILL to the process behind pidfd and waits, at most
// timeout, until it has exited (a zombie has: nothing of it runs).
func killWait(ctx context.Context, pidfd int, timeout time.Duration) error {
	if err := unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill the container's init: %w", err)
	}
	if err := waitExit(ctx, pidfd, timeout); err != nil {
		return fmt.Errorf("the container's init did not exit after SIGKILL: %w", err)
	}
	return nil
}
