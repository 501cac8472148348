package server

import (
	"context"
	"errors"
	"net"
	"sync"

	"golang.org/x/sys/unix"
)

// errPeerGone is the cause of a request's context once its client hung up:
// a slurmstepd that died, a podman-hpcd pull interrupted. What the request
// started for it alone (a pull nobody else waits for, podman save, an
// export's mksquashfs) stops then, instead of running on for no one.
var errPeerGone = errors.New("the client went away")

// untilHangup returns ctx, cancelled with errPeerGone as soon as the peer
// closes its end of c, and stop, which ends the watch: the caller must call
// stop before it reads from c again and before c is closed. The watch only
// polls (POLLRDHUP): it reads nothing of what the peer sends meanwhile.
func untilHangup(ctx context.Context, c *net.UnixConn) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	fd := -1
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(s uintptr) { fd, _ = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) })
	}
	var p [2]int
	if fd < 0 || unix.Pipe2(p[:], unix.O_CLOEXEC) != nil {
		// Not watched: the request runs to its end, as it always did.
		if fd >= 0 {
			unix.Close(fd)
		}
		return ctx, func() { cancel(nil) }
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}, {Fd: int32(p[0]), Events: unix.POLLIN}}
			_, err := unix.Poll(fds, -1)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err == nil && fds[1].Revents == 0 && fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0 {
				cancel(errPeerGone)
			}
			return
		}
	}()
	var once sync.Once
	return ctx, func() {
		once.Do(func() {
			unix.Close(p[1]) // wakes the poll
			<-done
			unix.Close(p[0])
			unix.Close(fd)
			cancel(nil)
		})
	}
}

// watchHangup runs f with untilHangup's context, and ends the watch however
// f returns: a panic in f (which serveConn recovers) must not leave the
// watch's copy of c open, or the peer would wait on a connection nobody
// serves.
func watchHangup[T any](ctx context.Context, c *net.UnixConn, f func(context.Context) (T, error)) (T, error) {
	rctx, stop := untilHangup(ctx, c)
	defer stop()
	return f(rctx)
}
