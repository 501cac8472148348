package node

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

// userRoot makes the container's root filesystem the job user's, as under
// enroot, in both modes: the image is mounted at bundle/lower through an
// idmapped mount that shows its root-owned files as the user's (the
// container's user namespace maps the user's uid alone, so root's would be
// nobody's there), and the writable layer's top directory is theirs. A
// writable root then takes the user's writes anywhere (touch /newfile), and
// what they create there is owned by their uid on the host, in the
// root-only bundle: nothing of it is another user's, let alone root's, and
// the squashfs below is never written. It returns the upper directory.
func (m *manager) userRoot(c *container, imageRoot string) (string, error) {
	userns, err := newUserNS(c.req.UID, c.req.GID)
	if err != nil {
		return "", err
	}
	defer userns.Close()
	if err := oci.MountIDMapped(imageRoot, filepath.Join(c.bundle, "lower"), userns); err != nil {
		return "", err
	}
	upper := filepath.Join(c.bundle, "upper")
	if err := os.Mkdir(upper, 0o755); err != nil {
		return "", err
	}
	// Everything is written before the user's uid owns the top: no
	// process of theirs can reach the layer yet (the bundle is root's).
	if c.req.Writable {
		if err := ownForeign(imageRoot, upper, c.img.Digest, int(c.req.UID), int(c.req.GID)); err != nil {
			return "", fmt.Errorf("make the writable root the user's: %w", err)
		}
	}
	if err := os.Chown(upper, int(c.req.UID), int(c.req.GID)); err != nil {
		return "", err
	}
	return upper, nil
}

// maxForeignFile is the largest file of another owner that ownForeign copies
// up; a larger one stays the overflow id's (read as other, not written).
const maxForeignFile = 16 << 20

// foreignCache holds, by image digest, the image's directories and regular
// files that another uid or gid than root's owns (images are content
// addressed: a digest's list never changes).
var foreignCache sync.Map // digest -> []string

// ownForeign copies up, into upper, the image's directories and files that
// another id than root owns (_apt's 0700 /var/lib/apt/lists/partial,
// root:shadow's /etc/shadow), and the directories above them, as the user's
// (uid, gid) with the image's modes: a mapping of a single id shows them as
// nobody's, which the user could neither enter nor change, and a package
// manager needs to (apt downloads into _apt's directories). Their contents
// are copied; setuid and setgid bits stay (on a file of the user's, under
// nosuid). imageRoot is the image's mount (not idmapped).
func ownForeign(imageRoot, upper, digest string, uid, gid int) error {
	var rels []string
	if v, ok := foreignCache.Load(digest); ok {
		rels = v.([]string)
	} else {
		var err error
		if rels, err = findForeign(imageRoot); err != nil {
			return err
		}
		foreignCache.Store(digest, rels)
	}
	made := map[string]bool{".": true}
	for _, rel := range rels {
		// Its directories first (the walk is in lexical order, a
		// directory before what it holds).
		var chain []string
		for d := path.Dir(rel); !made[d]; d = path.Dir(d) {
			chain = append([]string{d}, chain...)
		}
		for _, d := range append(chain, rel) {
			if made[d] {
				continue
			}
			if err := copyUpAs(imageRoot, upper, d, uid, gid); err != nil {
				return err
			}
			made[d] = true
		}
	}
	return nil
}

// findForeign walks the image and returns the paths (relative, in lexical
// order) of its directories and regular files (up to maxForeignFile) with
// another owner or group than root's.
func findForeign(imageRoot string) ([]string, error) {
	var rels []string
	// The trailing slash: the root is /proc/self/fd/N, a link to follow.
	root := imageRoot + "/"
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid == 0 && st.Gid == 0 {
			return nil
		}
		if fi.IsDir() || fi.Mode().IsRegular() && fi.Size() <= maxForeignFile {
			rels = append(rels, p[len(root):])
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the image: %w", err)
	}
	return rels, nil
}

// copyUpAs creates upper/rel like imageRoot/rel (a directory, or a regular
// file with its contents), owned by uid and gid. Nothing is followed: upper
// is the daemon's fresh directory, and rel was read from the image's own
// directories.
func copyUpAs(imageRoot, upper, rel string, uid, gid int) error {
	src := filepath.Join(imageRoot, rel)
	dst := filepath.Join(upper, rel)
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	mode := st.Mode & 0o7777
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdir(dst, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
	case unix.S_IFREG:
		if err := copyFileExcl(src, dst); err != nil {
			return err
		}
	default:
		return nil
	}
	// chown first: it clears setuid and setgid.
	if err := unix.Lchown(dst, uid, gid); err != nil {
		return err
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, dst, mode, 0); err != nil {
		return err
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	return unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// copyFileExcl copies src to dst, a new file (never through a symlink).
func copyFileExcl(src, dst string) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, io.LimitReader(in, maxForeignFile))
	return errors.Join(err, out.Close())
}
