package oci

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// MakeMountpoint creates dst inside root, as a directory, or as an empty
// file when file is set, with missing parents as directories. Every
// component is resolved inside root: a symlink in the image cannot make us
// create anything outside it. An existing dst is left as it is.
func MakeMountpoint(root, dst string, file bool) error {
	dst = path.Clean("/" + dst)
	if dst == "/" {
		return nil
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", dst, err)
	}
	defer unix.Close(rootFd)
	parts := strings.Split(strings.TrimPrefix(dst, "/"), "/")
	for i := range parts {
		rel := strings.Join(parts[:i+1], "/")
		last := i == len(parts)-1
		how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
		fd, err := unix.Openat2(rootFd, rel, how)
		if err == nil {
			unix.Close(fd)
			continue
		}
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("mount point %s: %s: %w", dst, rel, err)
		}
		parent, err := openInRoot(rootFd, strings.Join(parts[:i], "/"))
		if err != nil {
			return fmt.Errorf("mount point %s: %w", dst, err)
		}
		if last && file {
			var fd int
			fd, err = unix.Openat(parent, parts[i], unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
			if err == nil {
				unix.Close(fd)
			}
		} else {
			err = unix.Mkdirat(parent, parts[i], 0o755)
		}
		unix.Close(parent)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("mount point %s: create %s: %w", dst, rel, err)
		}
	}
	return nil
}

// openInRoot opens directory rel ("" for root itself) resolved inside rootFd.
func openInRoot(rootFd int, rel string) (int, error) {
	if rel == "" {
		rel = "."
	}
	return unix.Openat2(rootFd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
}
