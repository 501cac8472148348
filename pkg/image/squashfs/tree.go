package squashfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// TreeOptions say how SquashTree squashes a directory.
type TreeOptions struct {
	// Compression is as in Options ("zstd:3" when empty).
	Compression string
	// Exclude are paths relative to the tree left out of the squashfs.
	Exclude []string
	// Scratch is a root-only directory for the sandbox's root (a mount
	// point made and removed there).
	Scratch string
	// Command is the mksquashfs binary ("mksquashfs" when empty).
	Command string
	// Owner is who reads the tree: mksquashfs has their credentials
	// (see SquashTree).
	Owner Owner
	// MaxSize (> 0) bounds the squashfs as it is written: one that
	// would be larger fails with image.ErrTooLarge, its writing stopped by
	// the kernel (mksquashfs's RLIMIT_FSIZE) before it passes the bound.
	MaxSize int64
}

// SquashTree writes the directory tree dir as a squashfs at out, every
// entry recorded as root's (as enroot export and pyxis save), reading dir
// with the credentials of its owner (o.Owner), because dir is theirs to
// change while it is read (a running container's root): root reading it,
// even chrooted, would read with root's rights whatever a symlink, a swap
// or the kernel's handling of a tree changed under a mount leads to.
//
// mksquashfs runs in a user namespace of its own that maps only the
// owner's uid and gid, each to 0, with the owner's groups: to the kernel
// it is the owner, and its capabilities there reach only the owner's own
// files (of mode 0 too, which they could chmod). Whatever a symlink, a swap
// or a layer of the tree leads to, it opens only what the owner could open
// themselves. It is also chrooted into a root of its own, in a mount
// namespace of its own: a tmpfs holding only the host's /usr (and the
// merged-usr links or library directories beside it) read-only, dir
// read-only at /src, and out at /out. out must exist (it is bound, not
// created) and is given to the user for the write; dir's own submounts are
// not included. An entry the owner cannot read fails the squash, naming it.
func SquashTree(ctx context.Context, dir, out string, o TreeOptions) error {
	comp, err := ParseCompression(o.Compression)
	if err != nil {
		return err
	}
	if o.Command == "" {
		o.Command = "mksquashfs"
	}
	bin, err := exec.LookPath(o.Command)
	if err != nil {
		return fmt.Errorf("%q not found: install squashfs-tools: %w", o.Command, err)
	}
	if !filepath.IsAbs(bin) {
		return fmt.Errorf("mksquashfs %q: want an absolute path", bin)
	}
	if err := os.Chown(out, int(o.Owner.UID), int(o.Owner.GID)); err != nil {
		return err
	}
	sandbox, err := os.MkdirTemp(o.Scratch, "squash-sandbox-")
	if err != nil {
		return err
	}
	defer os.Remove(sandbox)
	m := Mksquashfs{Command: bin, Comp: comp, Exclude: o.Exclude, AllRoot: true, MaxSize: o.MaxSize}
	errc := make(chan error, 1)
	// The namespace and the groups are this thread's: the goroutine never
	// unlocks it, so the thread (and the sandbox's mounts) end with it.
	go func() {
		runtime.LockOSThread()
		if err := enterSandbox(sandbox, dir, out); err != nil {
			errc <- fmt.Errorf("squash %s: sandbox: %w", dir, err)
			return
		}
		// mksquashfs inherits this thread's groups: in a user namespace
		// whose setgroups is denied it cannot set its own, and the
		// daemon's would count for access to the host's files.
		groups := make([]int, len(o.Owner.Groups))
		for i, g := range o.Owner.Groups {
			groups[i] = int(g)
		}
		if err := unix.Setgroups(groups); err != nil {
			errc <- fmt.Errorf("squash %s: set the reader's groups: %w", dir, err)
			return
		}
		errc <- m.runIn(ctx, sandbox, "/src", "/out", &o.Owner)
	}()
	return srcPaths(<-errc)
}

// srcPaths rewrites the tree's paths in mksquashfs's messages ("Failed to
// read file /src/etc/x") as they are in the tree ("/etc/x"), and says why
// a file may not be read; errors.Is still sees what err wraps (ErrNoSpace).
func srcPaths(err error) error {
	if err == nil || !strings.Contains(err.Error(), " /src/") {
		return err
	}
	msg := strings.ReplaceAll(err.Error(), " /src/", " /")
	if strings.Contains(msg, "Failed to read file") {
		msg += " (it changed while it was read, or the tree's owner, whose permissions read it, may not read it)"
	}
	return &rewordedError{msg, err}
}

// rewordedError is err with another message.
type rewordedError struct {
	msg string
	err error
}

func (e *rewordedError) Error() string { return e.msg }
func (e *rewordedError) Unwrap() error { return e.err }

// enterSandbox gives the calling thread a private mount namespace with the
// sandbox's root mounted at root.
func enterSandbox(root, dir, out string) error {
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
		return fmt.Errorf("unshare: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
		return fmt.Errorf("make mounts slaves: %w", err)
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mount tmpfs: %w", err)
	}
	// The host's programs and libraries: /usr, and /bin, /lib... as they
	// are here (links into /usr on a merged-usr system, else directories).
	for _, d := range []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		host := "/" + d
		fi, err := os.Lstat(host)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return err
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(host)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, filepath.Join(root, d)); err != nil {
				return err
			}
		case fi.IsDir():
			if err := bindReadOnly(host, filepath.Join(root, d), true, true); err != nil {
				return err
			}
		}
	}
	if err := bindReadOnly(dir, filepath.Join(root, "src"), true, false); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "out"), nil, 0o600); err != nil {
		return err
	}
	if err := unix.Mount(out, filepath.Join(root, "out"), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s: %w", out, err)
	}
	// The library cache, when there is one (ld.so finds the libraries
	// without it, only slower).
	if _, err := os.Stat("/etc/ld.so.cache"); err == nil {
		if err := os.Mkdir(filepath.Join(root, "etc"), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, "etc", "ld.so.cache"), nil, 0o644); err != nil {
			return err
		}
		if err := bindReadOnly("/etc/ld.so.cache", filepath.Join(root, "etc", "ld.so.cache"), false, false); err != nil {
			return err
		}
	}
	return unix.Mount("", root, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
}

// bindReadOnly binds src on dst (created as a directory when mkdir),
// read-only, nosuid and nodev; rec takes src's submounts too.
func bindReadOnly(src, dst string, mkdir, rec bool) error {
	if mkdir {
		if err := os.Mkdir(dst, 0o755); err != nil {
			return err
		}
	}
	flags := uintptr(unix.MS_BIND)
	if rec {
		flags |= unix.MS_REC
	}
	if err := unix.Mount(src, dst, "", flags, ""); err != nil {
		return fmt.Errorf("bind %s: %w", src, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
	at := 0
	if rec {
		at = unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(unix.AT_FDCWD, dst, uint(at), attr); err != nil {
		return fmt.Errorf("make %s read-only: %w", dst, err)
	}
	return nil
}
