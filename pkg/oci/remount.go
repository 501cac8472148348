package oci

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SealRoot sets the root mount of the mount namespace mntns (an open
// /proc/PID/ns/mnt) nosuid and nodev, and read-only with readonly; then
// every mount of the namespace nosuid, and every one but /dev and those
// below it nodev (device nodes there must keep working: /dev/null, the gpu
// module's /dev/nvidia*). The tasks that join a container run programs from
// it as the job user, so a setuid file or a device node in the image or on a
// submount of a user's bind (a tmpfs mounted under a bound directory) must
// not count; and crun 1.8 mounts the root afresh without the flags of the
// mount it was given, so they are set again once it runs.
func SealRoot(mntns *os.File, readonly bool) error {
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_NOSUID | unix.MS_NODEV)
	if readonly {
		flags |= unix.MS_RDONLY
	}
	// The daemon's /proc, opened before the switch: the container's /proc
	// (if any) need not show this thread.
	proc, err := os.Open("/proc")
	if err != nil {
		return fmt.Errorf("seal the container's root: %w", err)
	}
	defer proc.Close()
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
		errc <- sealMounts(proc)
	})
	return <-errc
}

// sealMounts sets nosuid and nodev on every mount of the calling thread's
// mount namespace, then takes nodev off again where /dev's mounts (/dev and
// those below it) had none. proc is a procfs directory that shows the
// calling thread.
func sealMounts(proc *os.File) error {
	fd, err := unix.Openat(int(proc.Fd()), "thread-self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("seal the container's mounts: %w", err)
	}
	mounts, err := readMountinfo(os.NewFile(uintptr(fd), "mountinfo"))
	if err != nil {
		return fmt.Errorf("seal the container's mounts: %w", err)
	}
	// Recursive: a mount hidden under another (runtimes stack binds) is
	// sealed too.
	all := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if err := unix.MountSetattr(unix.AT_FDCWD, "/", unix.AT_RECURSIVE, &all); err != nil {
		return fmt.Errorf("seal the container's mounts: %w", err)
	}
	for _, m := range mounts {
		if m.point != "/dev" && !strings.HasPrefix(m.point, "/dev/") || slices.Contains(m.options, "nodev") {
			continue
		}
		if err := clearNodev(m); err != nil {
			return fmt.Errorf("seal the container's mounts: device nodes on %s: %w", m.point, err)
		}
	}
	return nil
}

// clearNodev takes nodev off the mount m, found at its mount point without
// following symlinks (what ran in the container before may have planted
// some). A mount that is not the one on top there (hidden under another,
// out of any task's reach) keeps it.
func clearNodev(m mountEntry) error {
	fd, err := unix.Openat2(unix.AT_FDCWD, m.point, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Statx_t
	if err := unix.Statx(fd, "", unix.AT_EMPTY_PATH, unix.STATX_MNT_ID, &st); err != nil {
		return err
	}
	if st.Mask&unix.STATX_MNT_ID == 0 || st.Mnt_id != m.id {
		return nil
	}
	dev := unix.MountAttr{Attr_clr: unix.MOUNT_ATTR_NODEV}
	return unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &dev)
}

// mountEntry is one line of a mountinfo file.
type mountEntry struct {
	id      uint64
	point   string
	options []string // the mount's own (not the file system's)
}

// readMountinfo parses a mountinfo file (and closes it), in its order.
func readMountinfo(f *os.File) ([]mountEntry, error) {
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 {
			continue
		}
		id, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("mountinfo: bad line %q", sc.Text())
		}
		out = append(out, mountEntry{id: id, point: unescapeMountinfo(fields[4]), options: strings.Split(fields[5], ",")})
	}
	return out, sc.Err()
}
