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

	specs "github.com/opencontainers/runtime-spec/specs-go"
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
// the squashfs below is never written. The upper directory is made in
// layer (the bundle, or a writable container's own file system), which it
// returns. What it copies up counts in shares (nil: a layer of its own,
// bounded otherwise), as c.copied, until the container goes.
func userRoot(c *container, imageRoot, layer string, shares *copyupShares) (string, error) {
	userns, release, err := sharedUserNS(c.req.UID, c.req.GID)
	if err != nil {
		return "", err
	}
	defer release()
	if err := oci.MountIDMapped(imageRoot, c.private("lower"), userns); err != nil {
		return "", err
	}
	upper := filepath.Join(layer, "upper")
	if err := os.Mkdir(upper, 0o755); err != nil {
		return "", err
	}
	// Everything is written before the user's uid owns the top: no
	// process of theirs can reach the layer yet (the bundle is root's).
	// A read-only root too: through the idmapped layer a directory of
	// another owner (a squashfs the user made holds their own uid) is the
	// overflow id's, under which not even the daemon may make the mount
	// points of the step's binds.
	budget := foreignBudget
	budget.share, budget.uid = shares, c.req.UID
	err = ownForeign(imageRoot, upper, c.img.Digest, int(c.req.UID), int(c.req.GID), &budget)
	c.copied = budget.taken
	if err != nil {
		return "", fmt.Errorf("make the container's root the user's: %w", err)
	}
	if err := os.Chown(upper, int(c.req.UID), int(c.req.GID)); err != nil {
		return "", err
	}
	return upper, nil
}

// maxForeignFile is the largest file of another owner that ownForeign copies
// up on its own; a larger one stays the overflow id's (read as other).
const maxForeignFile = 16 << 20

// foreignBudget bounds what ownForeign copies into a container's bundle, at
// every container's start: an image whose files are all a user's (a squashfs
// they made without -all-root) would otherwise be copied whole, every step,
// onto the node's disk. Variables for the tests.
var foreignBudget = copyBudget{bytes: 256 << 20, entries: 50000}

// copyBudget is what is left to copy up; with share, each entry is also
// charged to the user's share of state_dir (copyupShares), and taken says
// how much was.
type copyBudget struct {
	bytes, entries int64
	share          *copyupShares
	uid            uint32
	taken          int64
}

// take counts one entry of size bytes, or fails once the budget is spent.
func (b *copyBudget) take(size int64) error {
	b.entries--
	b.bytes -= size
	if b.entries < 0 || b.bytes < 0 {
		return errors.New("the image holds more files of other owners than root than a container may copy up " +
			fmt.Sprintf("(%d entries, %d MiB): rebuild it with its files root's (mksquashfs -all-root, or podman-hpcd import)",
				foreignBudget.entries, foreignBudget.bytes>>20))
	}
	// What tmpfs spends on it: whole pages.
	pages := (max(size, 0) + 4095) &^ 4095
	charged, err := b.share.take(b.uid, pages, copyupWhat, copyupFix)
	if err != nil {
		return err
	}
	b.taken += charged
	return nil
}

// foreignEntry is an entry of the image that another uid or gid than root's
// owns, relative to the image's root; tree: a directory that the daemon
// itself cannot search through the idmapped layer, copied whole.
type foreignEntry struct {
	rel  string
	tree bool
}

// foreignCache holds each image's foreignEntry list, by digest (images are
// content addressed: a digest's list never changes).
var foreignCache sync.Map // digest -> []foreignEntry

// ownForeign copies up, into upper, the image's directories and files that
// another id than root owns (_apt's 0700 /var/lib/apt/lists/partial,
// root:shadow's /etc/shadow), and the directories above them, as the user's
// (uid, gid) with the image's modes: a mapping of a single id shows them as
// nobody's, which the user could neither enter nor change, and a package
// manager must (apt downloads into _apt's directories). Through the
// idmapped layer such an entry is other's to everyone, the overlay's own
// (root's) lookups included: a directory that other may not search or list
// is copied with everything in it and made opaque, so that the overlay never
// looks below it. Setuid and setgid bits stay (on a file of the user's,
// under nosuid). imageRoot is the image's own mount (not idmapped).
func ownForeign(imageRoot, upper, digest string, uid, gid int, budget *copyBudget) error {
	var entries []foreignEntry
	if v, ok := foreignCache.Load(digest); ok {
		entries = v.([]foreignEntry)
	} else {
		var err error
		if entries, err = findForeign(imageRoot); err != nil {
			return err
		}
		foreignCache.Store(digest, entries)
	}
	made := map[string]bool{".": true}
	for _, e := range entries {
		// Its directories first (the walk is in lexical order, a
		// directory before what it holds).
		var chain []string
		for d := path.Dir(e.rel); !made[d]; d = path.Dir(d) {
			chain = append([]string{d}, chain...)
		}
		for _, d := range append(chain, e.rel) {
			if made[d] {
				continue
			}
			if err := copyUpAs(imageRoot, upper, d, uid, gid, budget); err != nil {
				return err
			}
			made[d] = true
		}
		if e.tree {
			if err := copyTreeAs(imageRoot, upper, e.rel, uid, gid, budget); err != nil {
				return err
			}
		}
	}
	return nil
}

// findForeign walks the image and returns, in lexical order, its
// directories and regular files (up to maxForeignFile) with another owner
// or group than root's.
func findForeign(imageRoot string) ([]foreignEntry, error) {
	var out []foreignEntry
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
		rel := p[len(root):]
		switch {
		case fi.IsDir() && st.Mode&0o005 != 0o005:
			out = append(out, foreignEntry{rel: rel, tree: true})
			return filepath.SkipDir
		case fi.IsDir() || fi.Mode().IsRegular() && fi.Size() <= maxForeignFile:
			out = append(out, foreignEntry{rel: rel})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the image: %w", err)
	}
	return out, nil
}

// copyTreeAs copies what the image's directory rel holds into upper/rel
// (made by copyUpAs), as uid's and gid's, and makes it opaque: the overlay
// takes it for the whole directory.
func copyTreeAs(imageRoot, upper, rel string, uid, gid int, budget *copyBudget) error {
	top := filepath.Join(imageRoot, rel)
	err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == top {
			return err
		}
		return copyUpAs(imageRoot, upper, rel+p[len(top):], uid, gid, budget)
	})
	if err != nil {
		return err
	}
	return unix.Lsetxattr(filepath.Join(upper, rel), "trusted.overlay.opaque", []byte("y"), 0)
}

// copyUpAs creates upper/rel like imageRoot/rel (a directory, a symlink, or
// a regular file with its contents), owned by uid and gid; anything else is
// left out. Nothing is followed: upper is the daemon's fresh directory, and
// rel was read from the image's own directories. Each entry is taken from
// budget.
func copyUpAs(imageRoot, upper, rel string, uid, gid int, budget *copyBudget) error {
	src := filepath.Join(imageRoot, rel)
	dst := filepath.Join(upper, rel)
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return err
	}
	if err := budget.take(st.Size); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdir(dst, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return err
		}
	case unix.S_IFREG:
		if err := copyFileExcl(src, dst); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
		return unix.Lchown(dst, uid, gid)
	default:
		return nil
	}
	// chown first: it clears setuid and setgid.
	if err := unix.Lchown(dst, uid, gid); err != nil {
		return err
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, dst, st.Mode&0o7777, 0); err != nil {
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
	_, err = io.Copy(out, in)
	return errors.Join(err, out.Close())
}

// aptConf is the apt configuration a --container-remap-root container gets
// when its image has apt: the seccomp filter makes apt's drop to the _apt
// user succeed without effect (the user namespace maps a single id), so
// apt's checks that the drop happened would fail it ("Could not switch
// group"); the drop itself still runs.
const aptConf = `// podman-hpc, --container-remap-root: the user namespace maps one id, and
// the drop to APT::Sandbox::User succeeds without effect.
APT::Sandbox::Verify::IDs "false";
APT::Sandbox::Verify::Regain "false";
`

// aptConfDir is where apt reads its configuration, in an image.
const aptConfDir = "etc/apt/apt.conf.d"

// aptFakeRoot returns the bind of aptConf into the image's apt
// configuration under --container-remap-root, when the image (mounted at
// imageRoot) has apt; none otherwise.
func aptFakeRoot(c *container, imageRoot string) ([]specs.Mount, error) {
	if !c.req.RemapRoot || !dirInRoot(imageRoot, aptConfDir) {
		return nil, nil
	}
	p := c.private("apt.conf")
	if err := createFile(p, []byte(aptConf)); err != nil {
		return nil, fmt.Errorf("write apt.conf: %w", err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		return nil, err
	}
	if err := os.Chown(p, int(c.req.UID), int(c.req.GID)); err != nil {
		return nil, err
	}
	return []specs.Mount{oci.BindMount(p, "/"+aptConfDir+"/99podman-hpc-remap-root", "ro", "nosuid", "nodev", "noexec")}, nil
}

// dirInRoot reports whether rel, resolved inside root, is a directory.
func dirInRoot(root, rel string) bool {
	dir, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return false
	}
	unix.Close(fd)
	return true
}
