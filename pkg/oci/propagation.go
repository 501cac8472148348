package oci

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// propagationFlags are the runtime-spec mount options that set a mount's
// propagation type, as mount(8) names them.
var propagationFlags = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// Propagation is a mount point of a container and the propagation types
// (runtime-spec options: "rprivate", "unbindable"...) its mount gets.
type Propagation struct {
	Dst     string
	Options []string
}

// PropagationOptions returns the options of opts that set a propagation
// type, in order.
func PropagationOptions(opts []string) []string {
	var out []string
	for _, o := range opts {
		if _, ok := propagationFlags[o]; ok {
			out = append(out, o)
		}
	}
	return out
}

// SetPropagation sets, from inside the mount namespace mntns (an open
// /proc/PID/ns/mnt), the propagation type of the mount on each Dst: crun 1.8
// leaves a bind mount's propagation options unapplied. A path resolves in
// the container (its symlinks lead nowhere else), and only that namespace's
// mounts change.
func SetPropagation(mntns *os.File, mounts []Propagation) error {
	if len(mounts) == 0 {
		return nil
	}
	errc := make(chan error, 1)
	goLocked(func() {
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("mount propagation: unshare: %w", err)
			return
		}
		if err := unix.Setns(int(mntns.Fd()), unix.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("mount propagation: setns: %w", err)
			return
		}
		for _, m := range mounts {
			for _, o := range m.Options {
				flags, ok := propagationFlags[o]
				if !ok {
					errc <- fmt.Errorf("mount propagation of %s: unknown type %q", m.Dst, o)
					return
				}
				if err := unix.Mount("", m.Dst, "", flags, ""); err != nil {
					errc <- fmt.Errorf("mount propagation of %s (%s): %w", m.Dst, o, err)
					return
				}
			}
		}
		errc <- nil
	})
	return <-errc
}
