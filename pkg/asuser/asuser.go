// Package asuser is the daemon's one way of touching what a user names
// (mount sources, the home directory, save and export targets, image files
// and layouts, the Docker socket): the work runs in a short-lived helper
// process (podman-hpc-asuser) whose credentials are the user's: uid, gid,
// supplementary groups, no capability. The helper sends back what it opened
// as descriptors (SCM_RIGHTS), or streams what it read into a pipe.
//
// Why a process and not a thread of the daemon that became the user: a
// thread shares the daemon's file descriptors and its /proc/self, and a
// magic link such as /proc/self/fd/N, /dev/fd/N or /proc/PID/root needs no
// permission on the directories of what it points to; the daemon's own
// descriptors (other users' images) were reachable that way. The helper
// holds nothing of the daemon's: its /proc/self is itself, and the daemon's
// /proc entries are another uid's. It also refuses every magic link
// (openat2 RESOLVE_NO_MAGICLINKS), and a FIFO, a socket or a device where a
// file is wanted. A path on a file system that never answers (a user's
// FUSE mount) blocks the helper, not the daemon: every call has a deadline,
// after which the helper is killed and the call fails with the reason.
//
// It promises: no path is resolved with the daemon's identity, its
// descriptors or its /proc; what comes back is checked again by the daemon
// (the helper is the user's process, and the user may tamper with it); a
// descriptor on a FUSE file system a user mounted is refused (the daemon
// would block on it).
package asuser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Credential is a user's identity: uid, primary gid, supplementary groups.
type Credential struct {
	UID, GID uint32
	Groups   []uint32
}

// Timeout bounds a call that opens, connects or unlinks: long enough for a
// slow network file system, short enough that a hung one fails the step
// well before Slurm's own timeouts. A variable for the tests.
var Timeout = 30 * time.Second

// ErrNotRegular is a path that names something else than a regular file
// where one is wanted (a FIFO, a socket, a device, a directory).
var ErrNotRegular = errors.New("not a regular file")

// ErrUserFUSE is a path on a FUSE file system that a user mounted.
var ErrUserFUSE = errors.New("on a FUSE file system that a user mounted, which the daemon does not use (it would wait on its server): use a file system the node mounts")

// ErrMagicLink wraps ELOOP: the path went through a symlink loop or a
// /proc magic link, which is never followed.
var ErrMagicLink = errors.New("it leads through a symlink loop or a /proc link (/proc/*/fd, /dev/fd, /proc/*/root, /proc/*/cwd), which is never followed")

// Want is one path to open, as open(2)'s flags (O_CLOEXEC added) and mode.
type Want struct {
	Path  string
	Flags int
	Mode  uint32
	// Regular refuses anything but a regular file (ErrNotRegular).
	Regular bool
	// Optional: a missing path gives a nil file, not an error.
	Optional bool
}

// OpenFiles opens each want as cred, in order, and returns the files (nil
// for a missing Optional one); the caller closes them. On an error (an
// *os.PathError naming the path) none is left open. With O_PATH the user's
// permissions apply to the directories along the path, while the file's own
// mode keeps applying to whoever uses the descriptor later; binding the
// descriptor instead of the path closes the race of a symlink swapped in
// after the check.
func OpenFiles(cred Credential, wants []Want) ([]*os.File, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	files, err := call(ctx, cred, request{Op: opOpen, Wants: wants}, nil)
	if err != nil {
		return nil, err
	}
	var mounts mountTable
	for i, f := range files {
		if f == nil {
			continue
		}
		if err := checkReceived(f, wants[i], &mounts); err != nil {
			closeAll(files)
			return nil, &os.PathError{Op: "open", Path: wants[i].Path, Err: err}
		}
	}
	return files, nil
}

// OpenRegular opens the regular file p read-only as cred, without waiting
// for a FIFO's writer or taking a controlling terminal.
func OpenRegular(cred Credential, p string) (*os.File, error) {
	files, err := OpenFiles(cred, []Want{{Path: p, Flags: unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY, Regular: true}})
	if err != nil {
		return nil, err
	}
	return files[0], nil
}

// Unlink removes the file p as cred.
func Unlink(cred Credential, p string) error {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	_, err := call(ctx, cred, request{Op: opUnlink, Path: p}, nil)
	return err
}

// Dial connects to the Unix stream socket at p as cred (the kernel checks
// the socket file's permissions against the user) and returns the
// connected socket.
func Dial(cred Credential, p string) (*os.File, error) {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	files, err := call(ctx, cred, request{Op: opDial, Path: p}, nil)
	if err != nil {
		return nil, err
	}
	if len(files) != 1 || files[0] == nil {
		closeAll(files)
		return nil, fmt.Errorf("connect %s: the helper sent no socket", p)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(files[0].Fd()), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		files[0].Close()
		return nil, fmt.Errorf("connect %s: the helper sent no socket", p)
	}
	return files[0], nil
}

// TarLayout writes the OCI layout at dir, read as cred, to w as a tar
// stream of its regular files (oci-layout, index.json, blobs/ALG/HEX):
// the helper walks and reads the directory, the daemon only copies the
// stream. ctx bounds the whole copy; a helper that sends nothing for
// Timeout is killed.
func TarLayout(ctx context.Context, cred Credential, dir string, w io.Writer) error {
	_, err := call(ctx, cred, request{Op: opLayout, Path: dir}, w)
	return err
}

func closeAll(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
