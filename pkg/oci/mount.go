package oci

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// MountOverlay mounts an overlay of lower (read-only) and upper/work on dir.
func MountOverlay(lower, upper, work, dir string) error {
	for _, d := range []string{upper, work, dir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("overlay: %w", err)
		}
	}
	// The upper layer is thrown away with the container, so the safety
	// features that cost time on every copy-up are not needed.
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", dir, "overlay", unix.MS_NOSUID|unix.MS_NODEV, data); err != nil {
		return fmt.Errorf("mount overlay on %s: %w", dir, err)
	}
	return nil
}

// Unmount unmounts dir if it is a mount point; not being mounted is not an
// error, so teardown can run twice. With lazy, a busy mount is detached.
func Unmount(dir string, lazy bool) error {
	flags := 0
	if lazy {
		flags = unix.MNT_DETACH
	}
	err := unix.Unmount(dir, flags)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", dir, err)
}

// MountsUnder lists the mount points at or below dir, deepest first, in
// the calling thread's mount namespace. /proc/self is the main thread's,
// which is not always the process's: a goroutine that locked its thread and
// unshared its mount namespace (squashfs.SquashTree's sandbox) and then
// exited on the main thread leaves that thread parked in its namespace for
// good (Go cannot end the main thread), and its table lacks every mount
// made since: a container's teardown would then unmount nothing and remove
// its bundle through mounts that are still there.
func MountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, strings.TrimSuffix(dir, "/")+"/") {
			out = append(out, mp)
		}
	}
	// Deepest first: reverse mount order unmounts children before parents.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, sc.Err()
}

// unescapeMountinfo undoes the octal escapes (\040 for space) of mountinfo.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// CloneMount attaches at dst a copy of the mount at src (not of the mounts
// below it), nosuid and nodev, and read-only with readonly: the flags are
// set on the copy before it is attached, so dst never takes a write for a
// moment, whatever src allows.
func CloneMount(src, dst string, readonly bool) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("mount %s on %s: open_tree: %w", src, dst, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	if readonly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("mount %s on %s: mount_setattr: %w", src, dst, err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("mount %s on %s: %w", src, dst, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount %s on %s: move_mount: %w", src, dst, err)
	}
	return nil
}

// MakeReadOnly makes the mount at dir read-only (not those below it). A
// file open for writing on it makes that fail (EBUSY).
func MakeReadOnly(dir string) error {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(unix.AT_FDCWD, dir, unix.AT_SYMLINK_NOFOLLOW, &attr); err != nil {
		return fmt.Errorf("make %s read-only: %w", dir, err)
	}
	return nil
}

// MountIDMapped attaches at dst a copy of the mount at src whose file
// owners are shifted by the user namespace userns (mount_setattr(2)
// MOUNT_ATTR_IDMAP): with --container-remap-root, the image's root-owned
// files appear owned by the user, so that the user, root in the container's
// user namespace, owns them there. The file system of src must support it
// (squashfs and tmpfs do; overlayfs itself does not, hence its layers).
func MountIDMapped(src, dst string, userns *os.File) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("idmapped mount of %s: open_tree: %w", src, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("idmapped mount of %s: mount_setattr: %w", src, err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("idmapped mount of %s: %w", src, err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("idmapped mount of %s: move_mount: %w", src, err)
	}
	return nil
}
