// Package asuser runs the daemon's work on a job user's behalf as that
// user: the one place where root (podman-hpcd) becomes a user to open what
// the user names (mount sources, save paths, image files and layouts).
//
// The work runs on an OS thread of its own that has fully become the
// user: real, effective, saved and file-system uid and gid, and the
// supplementary groups, are the user's, and the thread has no
// capabilities (setresuid to a non-zero uid clears them). So the user's
// permissions apply to every directory along a path and to the file
// itself, as they would to the user's own process, and nothing root may do
// is left to the work. The system calls are the raw, per-thread ones (Go's
// wrappers change every thread); the goroutine ends locked, so the Go
// runtime destroys the thread instead of reusing it, and threads it
// needs meanwhile come from its template thread, not from this one.
//
// It promises: the work never runs with root's identity unless the user
// is root; a thread that could not fully become the user runs nothing.
package asuser

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Credential is a user's identity: uid, primary gid, supplementary groups.
type Credential struct {
	UID, GID uint32
	Groups   []uint32
}

// Do runs fn as cred on a thread of its own and returns fn's error, or why
// the thread could not become cred. fn must not start goroutines (they
// would run as root, elsewhere) nor keep state that outlives it.
func Do(cred Credential, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with us
		if err := become(cred); err != nil {
			done <- err
			return
		}
		done <- fn()
	}()
	return <-done
}

// Open opens each path as cred, with open(2)'s flags (O_CLOEXEC added)
// and mode, and returns the files in order; the caller closes them. On an
// error (an *os.PathError naming the path) none is left open. With O_PATH
// the user's permissions apply to the directories along the path, while
// the file's own mode keeps applying to whoever uses the descriptor later;
// binding the descriptor instead of the path closes the race of a symlink
// swapped in after the check.
func Open(cred Credential, paths []string, flags int, mode uint32) ([]*os.File, error) {
	var files []*os.File
	err := Do(cred, func() error {
		for _, p := range paths {
			fd, err := unix.Open(p, flags|unix.O_CLOEXEC, mode)
			if err != nil {
				return &os.PathError{Op: "open", Path: p, Err: err}
			}
			files = append(files, os.NewFile(uintptr(fd), p))
		}
		return nil
	})
	if err != nil {
		for _, f := range files {
			f.Close()
		}
		return nil, err
	}
	return files, nil
}

// become makes the calling thread cred, and checks that it holds no
// capability afterwards (for a non-root cred).
func become(c Credential) error {
	groups := append([]uint32(nil), c.Groups...)
	var gp uintptr
	if len(groups) > 0 {
		gp = uintptr(unsafe.Pointer(&groups[0]))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), gp, 0); e != 0 {
		return fmt.Errorf("become uid %d: setgroups: %w", c.UID, e)
	}
	runtime.KeepAlive(groups)
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(c.GID), uintptr(c.GID), uintptr(c.GID)); e != 0 {
		return fmt.Errorf("become uid %d: setresgid %d: %w", c.UID, c.GID, e)
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, uintptr(c.UID), uintptr(c.UID), uintptr(c.UID)); e != 0 {
		return fmt.Errorf("become uid %d: setresuid: %w", c.UID, e)
	}
	if c.UID == 0 {
		return nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("become uid %d: capget: %w", c.UID, err)
	}
	for _, d := range data {
		if d.Effective|d.Permitted|d.Inheritable != 0 {
			return fmt.Errorf("become uid %d: capabilities left (effective %#x, permitted %#x)", c.UID, d.Effective, d.Permitted)
		}
	}
	return nil
}
