package oci

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// SealRoot sets the root mount of the mount namespace mntns (an open
// /proc/PID/ns/mnt) nosuid and nodev, and read-only with readonly. The
// tasks that join a container run programs from its root as the job user
// without no_new_privs, so a setuid file in the image must not count; and
// crun 1.8 mounts the root afresh without the flags of the mount it was
// given, so they are set again once it runs.
func SealRoot(mntns *os.File, readonly bool) error {
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV)
	if readonly {
		flags |= unix.MS_RDONLY
	}
	errc := make(chan error, 1)
	// The thread joins the container's mount namespace: it dies with
	// this goroutine instead of running other goroutines in there.
	goLocked(func() {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("seal the container's root: unshare: %w", err)
			return
		}
		if err := unix.Setns(int(mntns.Fd()), unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("seal the container's root: setns: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", flags, ""); err != nil {
			errc <- fmt.Errorf("seal the container's root: remount: %w", err)
			return
		}
		errc <- nil
	})
	return <-errc
}
