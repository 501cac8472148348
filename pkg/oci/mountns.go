package oci

import (
	"errors"
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// MountNS is one OS thread with a mount namespace of its own, a slave of the
// daemon's: mounts the daemon makes below a shared directory (MakeShared)
// appear in it, and what is changed in it stays there. The runtime runs from
// it when it needs a view of the host the daemon must not change for
// everyone (crun with the cgroup2 hierarchy of a hybrid host hidden).
//
// Go runs goroutines on any thread, and a mount namespace belongs to a
// thread: so the work is sent to the one goroutine locked to that thread
// (goLocked), which never unlocks it (the thread dies with the namespace).
type MountNS struct {
	work chan func()
	// mu guards closed: Do after Close (a container's removal that a
	// timer runs as the daemon stops) fails instead of panicking.
	mu     sync.RWMutex
	closed bool
}

// errMountNSClosed is Do's error after Close.
var errMountNSClosed = errors.New("the runtime's mount namespace is closed")

// NewMountNS starts the thread, makes its namespace's mounts slaves of the
// daemon's, then runs setup in it.
func NewMountNS(setup func() error) (*MountNS, error) {
	n := &MountNS{work: make(chan func())}
	ready := make(chan error)
	goLocked(func() {
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			ready <- fmt.Errorf("runtime mount namespace: unshare: %w", err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
			ready <- fmt.Errorf("runtime mount namespace: make slave: %w", err)
			return
		}
		if setup != nil {
			if err := setup(); err != nil {
				ready <- fmt.Errorf("runtime mount namespace: %w", err)
				return
			}
		}
		ready <- nil
		for fn := range n.work {
			fn()
		}
	})
	if err := <-ready; err != nil {
		return nil, err
	}
	return n, nil
}

// Do runs fn on the namespace's thread and returns its error. A process
// started by fn (exec.Cmd.Start) is born in the namespace; waiting for it
// can happen anywhere. On a nil MountNS, fn runs here.
func (n *MountNS) Do(fn func() error) error {
	if n == nil {
		return fn()
	}
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return errMountNSClosed
	}
	done := make(chan error, 1)
	n.work <- func() { done <- fn() }
	return <-done
}

// Close ends the thread, and with it the namespace once nothing else holds
// it. Do fails after it.
func (n *MountNS) Close() {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.closed {
		n.closed = true
		close(n.work)
	}
}

// MakeShared makes dir a shared mount, binding it on itself first when it is
// not a mount point, so that mounts made below it reach the slave
// namespaces created afterwards (MountNS). Calling it again is harmless.
func MakeShared(dir string) error {
	mounts, err := MountsUnder(dir)
	if err != nil {
		return err
	}
	isMount := false
	for _, mp := range mounts {
		isMount = isMount || mp == dir
	}
	if !isMount {
		if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s on itself: %w", dir, err)
		}
	}
	if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", dir, err)
	}
	return nil
}
