package oci

import (
	"bufio"
	"errors"
	"fmt"
	"os"
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

// sealMounts sets nosuid on every mount of the calling thread's mount
// namespace, and nodev on every one outside /dev. proc is a procfs
// directory that shows the calling thread.
func sealMounts(proc *os.File) error {
	nosuid := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID}
	if err := unix.MountSetattr(unix.AT_FDCWD, "/", unix.AT_RECURSIVE, &nosuid); err != nil {
		return fmt.Errorf("seal the container's mounts: nosuid: %w", err)
	}
	fd, err := unix.Openat(int(proc.Fd()), "thread-self/mountinfo", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("seal the container's mounts: %w", err)
	}
	points, err := mountPoints(os.NewFile(uintptr(fd), "mountinfo"))
	if err != nil {
		return fmt.Errorf("seal the container's mounts: %w", err)
	}
	for _, p := range points {
		if p == "/dev" || strings.HasPrefix(p, "/dev/") {
			continue
		}
		if err := setNodev(p); err != nil {
			return fmt.Errorf("seal the container's mounts: nodev on %s: %w", p, err)
		}
	}
	return nil
}

// setNodev sets nodev on the mount on top at path, resolved without
// following symlinks (what ran in the container before may have planted
// some). A path that no longer resolves is a mount hidden under another,
// which no task can reach.
func setNodev(path string) error {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
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
	nodev := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NODEV}
	return unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &nodev)
}

// mountPoints reads the mount points of a mountinfo file (and closes it),
// each once, in the file's order.
func mountPoints(f *os.File) ([]string, error) {
	defer f.Close()
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if mp := unescapeMountinfo(fields[4]); !seen[mp] {
			seen[mp] = true
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}
