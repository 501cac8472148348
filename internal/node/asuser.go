package node

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// credential is a user's identity for permission checks.
type credential struct {
	UID, GID uint32
	Groups   []uint32
}

// openAsUser opens each path with O_PATH under the user's file-system
// identity, so that the permissions of every directory along the path apply
// as they would to the user (a file under a 0700 directory of someone else
// stays out of reach), while the file's own mode keeps applying to whoever
// uses it later (O_PATH needs no read permission). Mounting the returned
// fd's /proc path instead of the path closes the race of a user swapping a
// symlink after the check. The caller closes the files.
//
// It runs on a thread of its own that changes only its own fsuid, fsgid and
// groups (raw syscalls are per thread; Go's wrappers change every thread) and
// is thrown away afterwards: the goroutine ends locked, so the runtime
// destroys the thread rather than reuse it with a user's identity.
func openAsUser(cred credential, paths []string) ([]*os.File, error) {
	return openFilesAsUser(cred, paths, unix.O_PATH, 0)
}

// openFilesAsUser is openAsUser with open(2)'s flags and mode (O_CLOEXEC is
// added): to create or write a file as the user, say.
func openFilesAsUser(cred credential, paths []string, flags int, mode uint32) ([]*os.File, error) {
	type result struct {
		files []*os.File
		err   error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		files, err := openOnThisThread(cred, paths, flags, mode)
		done <- result{files, err}
	}()
	r := <-done
	return r.files, r.err
}

func openOnThisThread(cred credential, paths []string, flags int, mode uint32) ([]*os.File, error) {
	groups := make([]uint32, len(cred.Groups))
	copy(groups, cred.Groups)
	var gp uintptr
	if len(groups) > 0 {
		gp = uintptrOf(&groups[0])
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), gp, 0); e != 0 {
		return nil, fmt.Errorf("setgroups: %w", e)
	}
	// setfsgid/setfsuid return the previous value and cannot fail visibly;
	// read back to be sure. Leaving fsuid 0 drops CAP_DAC_OVERRIDE and
	// CAP_DAC_READ_SEARCH from this thread's effective set.
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(cred.GID), 0, 0)
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(cred.UID), 0, 0)
	if got, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); uint32(got) != cred.UID {
		return nil, fmt.Errorf("setfsuid %d did not take (fsuid is %d)", cred.UID, got)
	}
	var files []*os.File
	for _, p := range paths {
		fd, err := unix.Open(p, flags|unix.O_CLOEXEC, mode)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, &os.PathError{Op: "open", Path: p, Err: err}
		}
		files = append(files, os.NewFile(uintptr(fd), p))
	}
	return files, nil
}
