package server

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// peer is who is on the other end of a connection, as the kernel says
// (SO_PEERCRED: taken at connect time, cannot be forged by the caller).
type peer struct {
	PID      int32
	UID, GID uint32
}

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
	return peer{PID: cred.Pid, UID: cred.Uid, GID: cred.Gid}, nil
}
