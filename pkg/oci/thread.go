package oci

import (
	"runtime"

	"github.com/podman-hpc/podman-hpc/pkg/timerslack"
	"golang.org/x/sys/unix"
)

// goLocked runs fn in a new goroutine locked to an OS thread that is not
// the process's main thread, and never unlocked: fn may move its thread into
// other namespaces, and the thread ends with fn. Not the main thread,
// because /proc/self shows the main thread's namespaces, which must stay
// the daemon's (and Go keeps a main thread whose goroutine exits locked).
func goLocked(fn func()) {
	go func() {
		runtime.LockOSThread()
		if unix.Gettid() == unix.Getpid() {
			// Holding the main thread, the next goroutine gets another;
			// this one lets go once that one is locked.
			locked := make(chan struct{})
			goLocked(func() {
				close(locked)
				fn()
			})
			<-locked
			runtime.UnlockOSThread()
			return
		}
		// The runtime, started from here (MountNS), and the
		// containers it starts inherit this thread's timer slack.
		timerslack.Restore()
		fn()
	}()
}
