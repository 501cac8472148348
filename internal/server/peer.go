package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/charge"
)

// peer is who is on the other end of a connection, as the kernel says
// (SO_PEERCRED: taken at connect time, cannot be forged by the caller).
type peer struct {
	PID      int32
	UID, GID uint32
	// pidfd is the connecting process itself (SO_PEERPIDFD), whatever
	// happens to its pid later; nil where the kernel gives none. The
	// connection's server closes it.
	pidfd *os.File
}

// proc is the peer as a process whose cgroups may be read.
func (p peer) proc() stepcgroup.Proc { return stepcgroup.Proc{PID: int(p.PID), FD: p.pidfd} }

func (p peer) isRoot() bool { return p.UID == 0 }

func peerOf(c *net.UnixConn) (peer, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{}, fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return peer{}, fmt.Errorf("peer credentials: %w", credErr)
	}
	p := peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}
	pidfd := -1
	raw.Control(func(fd uintptr) {
		pidfd, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PEERPIDFD)
	})
	if pidfd <= 0 {
		// Before Linux 6.5: a pidfd of the pid now, checked against
		// the peer's uid where it matters (stepcgroup.OfProcess).
		pidfd, _ = unix.PidfdOpen(int(cred.Pid), 0)
	}
	if pidfd > 0 {
		unix.CloseOnExec(pidfd)
		p.pidfd = os.NewFile(uintptr(pidfd), "peer-pidfd")
	}
	return p, nil
}

// chargedTo is ctx whose helpers (podman save, mksquashfs) a user's request
// starts go into the user's own cgroups: those of their process that asked
// (their job's, or their session's), under their limits and accounting.
// Root's requests (a job's prefetch, from its prolog) keep the daemon's.
func chargedTo(ctx context.Context, p peer, log *slog.Logger) context.Context {
	if p.isRoot() || p.PID <= 0 {
		return ctx
	}
	return charge.With(ctx, func(pid int) error {
		mounts, err := stepcgroup.DaemonMounts()
		if err != nil {
			return err
		}
		t, err := stepcgroup.OfProcess(p.proc(), p.UID, mounts)
		if err != nil {
			// The user's process is gone: so is the request's reason.
			return err
		}
		log.Debug("helper charged to the user", "pid", pid, "cgroups", t.Dirs)
		return t.Join(pid)
	})
}
