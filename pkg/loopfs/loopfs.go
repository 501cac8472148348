// Package loopfs is a file system of a fixed size in a sparse file: made by
// mke2fs (ext4, no journal), mounted from a loop device that frees itself
// when the mount goes. A container's writable layer lives in one, so that
// its writes stop at the file's size (ENOSPC, inside that file system
// only) and go, all at once, with the file: the same as Shifter's
// per-node cache (an XFS in a sparse file) and Apptainer's overlay images.
//
// The file takes on its disk only what was written into the file system
// (and a little of ext4's own: about 1 MiB for 100 GiB); its size is a
// bound, not a reservation. Every function here is root's work on root's
// own files: the caller names a file in a directory only root may write.
package loopfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MinSize is the smallest file system Make makes: ext4's own metadata in
// a smaller one leaves next to nothing for files.
const MinSize = 16 << 20

// Mkfs is the program Make runs (e2fsprogs' mke2fs), for the tests.
var Mkfs = "mke2fs"

// mkfsTimeout bounds mke2fs: on a fresh sparse file it takes milliseconds
// (9 ms for 100 GiB here); one that hangs is a broken disk.
const mkfsTimeout = time.Minute

// mkfsArgs are mke2fs's options for a throw-away file system:
//   - no journal: nothing in it must survive a crash (the container goes
//     with the node), and a journal would take its space and its writes;
//   - no reserved blocks (-m 0) and no space kept to grow it (resize_inode);
//   - nodiscard: the file is fresh and sparse, a discard only costs time;
//   - lazy_itable_init: inode tables are not zeroed (Mount's noinit_itable
//     keeps the kernel from zeroing them later, which would fill the file).
//
// The root directory is root's, 0755 (Mount's caller makes what is
// under it).
var mkfsArgs = []string{"-q", "-F", "-t", "ext4", "-O", "^has_journal,^resize_inode", "-m", "0",
	"-E", "nodiscard,lazy_itable_init=1,root_owner=0:0", "-L", "podman-hpc"}

// Make creates path, a new file (never an existing one, never through a
// symlink) of size bytes, and an empty ext4 file system in it. On failure
// the file is removed.
func Make(ctx context.Context, path string, size int64) (err error) {
	if size < MinSize {
		return fmt.Errorf("make %s: size %d below the minimum %d", path, size, int64(MinSize))
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("make %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(path)
		}
	}()
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("make %s: %w", path, err)
	}
	ctx, cancel := context.WithTimeout(ctx, mkfsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, Mkfs, append(mkfsArgs, path)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// mke2fs asks nothing with -F, and reads only its mke2fs.conf.
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 512 {
			msg = msg[:512]
		}
		if errors.Is(err, exec.ErrNotFound) {
			return fmt.Errorf("make %s: %s not found: install e2fsprogs", path, Mkfs)
		}
		return fmt.Errorf("make %s: %s: %w: %s", path, Mkfs, err, msg)
	}
	return nil
}

// Mount mounts the file system of path (made by Make) on dir, read-write,
// nosuid, nodev and noatime, from a loop device of its own that detaches
// itself once the last mount of it goes (in every mount namespace). An
// error of the file system (its disk full under the sparse file) makes it
// read-only rather than carrying on.
func Mount(path, dir string) error {
	loop, err := Attach(path, false)
	if err != nil {
		return fmt.Errorf("mount %s: %w", path, err)
	}
	// Autoclear: the mount holds the device from now on.
	defer loop.Close()
	err = unix.Mount(loop.Name(), dir, "ext4", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOATIME, "noinit_itable,errors=remount-ro")
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", path, dir, err)
	}
	return nil
}

// Attach attaches file to a free loop device, read-only or read-write,
// that detaches itself when its last user goes (LO_FLAGS_AUTOCLEAR): the
// caller closes the returned device once it has mounted it.
func Attach(file string, readOnly bool) (*os.File, error) {
	flags := os.O_RDWR
	if readOnly {
		flags = os.O_RDONLY
	}
	f, err := os.OpenFile(file, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	// Another process may take the device between our asking for a free
	// one and configuring it: then ask again.
	for attempt := 0; ; attempt++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("no free loop device: %w", err)
		}
		loop, err := os.OpenFile(fmt.Sprintf("/dev/loop%d", n), flags|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_AUTOCLEAR
		if readOnly {
			cfg.Info.Flags |= unix.LO_FLAGS_READ_ONLY
		}
		err = unix.IoctlLoopConfigure(int(loop.Fd()), &cfg)
		if err == nil {
			return loop, nil
		}
		loop.Close()
		if !errors.Is(err, unix.EBUSY) || attempt == 20 {
			return nil, fmt.Errorf("loop device %d: %w", n, err)
		}
	}
}

// InUse reports whether a loop device is attached to file (an absolute
// path): its file system is still mounted somewhere, or held.
func InUse(file string) bool {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil && strings.TrimSuffix(string(b), "\n") == file {
			return true
		}
	}
	return false
}

// Allocated returns what path takes on its disk now (its blocks), which
// is at most its size.
func Allocated(path string) (int64, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

// Space is what a mounted file system (Mount's dir) has: its size and
// what is left of it for files, in bytes, and its free inodes.
type Space struct {
	Size, Avail int64
	FreeInodes  uint64
}

// SpaceOf returns the space of the file system mounted at dir.
func SpaceOf(dir string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Space{}, err
	}
	return Space{Size: int64(st.Blocks) * st.Bsize, Avail: int64(st.Bavail) * st.Bsize, FreeInodes: st.Ffree}, nil //nolint:gosec // block counts fit
}

// Full reports whether s is, as a writer sees it, out of room: less than
// 4 MiB (1/64 of a smaller one) left, or no inode. A write that got ENOSPC
// leaves at most a few blocks.
func (s Space) Full() bool {
	return s.Avail < min(4<<20, s.Size/64) || s.FreeInodes == 0
}
