package node

import (
	"os"

	"golang.org/x/sys/unix"
)

// statNoSync is what the kernel already knows of path (fd at, flags as
// statx(2)'s), without asking its file system: AT_STATX_DONT_SYNC. Root
// looks at what a user's paths lead to (a bind's source and the mounts
// below it, a kept container's sources), and a FUSE or network file system
// there that stopped answering would hold the daemon's thread for as long
// as it does, in an uninterruptible wait (outside review, 2026-12-06).
func statNoSync(at int, path string, flags int) (unix.Statx_t, error) {
	var sx unix.Statx_t
	err := unix.Statx(at, path, flags|unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE|unix.STATX_INO, &sx)
	if err != nil {
		return sx, &os.PathError{Op: "statx", Path: path, Err: err}
	}
	return sx, nil
}

// isDirNoSync says whether path is a directory, by statNoSync (symlinks
// followed, as stat(2)).
func isDirNoSync(path string) (bool, error) {
	sx, err := statNoSync(unix.AT_FDCWD, path, 0)
	return sx.Mode&unix.S_IFMT == unix.S_IFDIR, err
}
