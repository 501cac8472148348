package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/asuser"
	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// newBundleName returns a fresh, unguessable bundle path in dir: a
// container's directory is never at a path another user could predict.
func newBundleName(dir string) (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("bundle name: %w", err)
	}
	return filepath.Join(dir, hex.EncodeToString(b)), nil
}

// bundleIDFile names, in a bundle, the runtime's id of its container: what
// a restarted daemon needs to delete it.
const bundleIDFile = "id"

// makeBundle creates the container's directory: root's alone (0700), so no
// other user reads the job's writes or a private image's files in it, and
// the job user cannot plant anything in it for root to follow. The runtime
// reaches it from the container's user namespace, as the job user: that one
// user may pass through (a POSIX ACL), no one else.
func makeBundle(c *container) error {
	if err := createBundle(c); err != nil {
		return err
	}
	return oci.AllowTraverse(c.bundle, c.req.UID)
}

// privateDir names, in a bundle, a directory of root's alone (0700, no
// ACL): what the job user must not reach from the host lives there. The
// bundle lets the user pass, because the runtime reaches the container's
// root from its user namespace, and the bundle's name is in every
// mountinfo: a process of the user's on the host once wrote without bound
// into state_dir (a tmpfs: the node's memory) through a read-only
// container's upper layer, its overlay and its account files, all of them
// the user's, in the bundle. Only the root the runtime is given (rootRO:
// read-only with the container's root) stays in reach; the runtime binds
// the files it needs from here as root.
const privateDir = "private"

// private is the path of name in c's private directory.
func (c *container) private(name string) string {
	return filepath.Join(c.bundle, privateDir, name)
}

// publicRoot is where, in the bundle, the runtime finds the container's
// root: a mount of c.rootfs (the daemon's own view, in the private
// directory), made by publishRoot.
func (c *container) publicRoot() string { return filepath.Join(c.bundle, "rootfs") }

// publishRoot mounts c.rootfs at c.publicRoot() in the runtime's own mount
// namespace only (withOwnMountNS): the job user may pass through the
// bundle, and on the host finds there an empty directory of root's. It is
// read-only when readonly, and never otherwise for a moment.
func publishRoot(rt *oci.Runtime, c *container, readonly bool) error {
	return rt.NS.Do(func() error { return oci.CloneMount(c.rootfs, c.publicRoot(), readonly) })
}

// unpublishRoot undoes publishRoot (a removed bundle's mounts in other
// namespaces go anyway; this is the orderly way).
func unpublishRoot(rt *oci.Runtime, c *container) error {
	return rt.NS.Do(func() error { return oci.Unmount(c.publicRoot(), true) })
}

// createBundle is makeBundle but the ACL: the directory, its private
// directory and its id file.
func createBundle(c *container) error {
	parent := filepath.Dir(c.bundle)
	if err := os.MkdirAll(parent, 0o711); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	if err := os.Chmod(parent, 0o711); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	if err := os.Mkdir(c.bundle, 0o700); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	if err := os.Mkdir(filepath.Join(c.bundle, privateDir), 0o700); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	if err := createFile(filepath.Join(c.bundle, bundleIDFile), []byte(c.id)); err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	return nil
}

// createFile creates a new file (never an existing one, never through a
// symlink) with data.
func createFile(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	return errors.Join(err, f.Close())
}

// stagedMount is a bind whose source the job names or can reach.
type stagedMount struct {
	src, dst string
	opts     []string
	// module: a module's (hooks.Result.UserMounts): skipped when the
	// source does not exist.
	module bool
	// option is the user's option that asked for it, for errors ("":
	// --container-mounts).
	option string
}

// optionName is the option errors about m name.
func (m stagedMount) optionName() string {
	if m.option != "" {
		return m.option
	}
	return "--container-mounts"
}

// stageAsUser opens every source as the job user and binds what was opened
// on a stage in the bundle (stageMount), and returns the container's binds
// of the stages and the files held open for them.
func (m *manager) stageAsUser(c *container, acct account, cred credential, mounts []stagedMount) ([]specs.Mount, []*os.File, error) {
	held, keep, err := openStaged(cred, mounts)
	var se *stageError
	switch {
	case errors.As(err, &se) && !se.mount.module && errors.Is(se.err, unix.ENOENT):
		return nil, nil, wire.OptionErrorf(se.mount.optionName(), "source path does not exist: %s", se.mount.src)
	case errors.As(err, &se) && !se.mount.module:
		return nil, nil, wire.OptionErrorf(se.mount.optionName(), "%s: %v (as user %s)", se.mount.src, se.err, acct.Name)
	case errors.As(err, &se):
		return nil, nil, fmt.Errorf("bind %s for the step (PMIx or a module's directory): %v (as user %s); check the job's PMIX_* variables", se.mount.src, se.err, acct.Name)
	case err != nil:
		return nil, nil, err
	}
	if len(held) == 0 {
		return nil, held, nil
	}
	stages := filepath.Join(c.bundle, "mounts")
	if err := os.Mkdir(stages, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, held, err
	}
	if err := oci.AllowTraverse(stages, c.req.UID); err != nil {
		return nil, held, err
	}
	staged := make([]string, len(held))
	for i, f := range held {
		stage, err := stageMount(f, filepath.Join(stages, strconv.Itoa(i)))
		if err != nil {
			return nil, held, wire.OptionErrorf(keep[i].optionName(), "%s: %w", keep[i].src, err)
		}
		staged[i] = stage
	}
	// One read of the mount table for every stage: a container with a
	// home, the site's mounts and PMIx's directories has several.
	all, err := oci.MountsUnder(stages)
	if err != nil {
		return nil, held, err
	}
	var out []specs.Mount
	for i, stage := range staged {
		opts := append([]string{"nosuid", "nodev"}, keep[i].opts...)
		out = append(out, oci.BindMount(stage, keep[i].dst, opts...))
		for _, sub := range submounts(all, stage) {
			out = append(out, oci.BindMount(sub, path.Join(keep[i].dst, strings.TrimPrefix(sub, stage)), opts...))
		}
	}
	return out, held, nil
}

// submounts returns the mount points below stage, parents first, each
// once, from all (oci.MountsUnder's list, deepest first, of a directory
// holding stage). crun 1.8 binds only a source's own mount into a
// container with a user namespace (every container has one), not the
// mounts below it, so a tmpfs or NFS mount inside a user's directory is
// bound on its own.
func submounts(all []string, stage string) []string {
	var out []string
	for i := len(all) - 1; i >= 0; i-- { // deepest first: parents first
		mp := all[i]
		if strings.HasPrefix(mp, stage+"/") && !slices.Contains(out, mp) {
			out = append(out, mp)
		}
	}
	return out
}

// credential is the job user's identity, for everything opened as them.
type credential = asuser.Credential

// stageError is a source the user could not open.
type stageError struct {
	mount stagedMount
	err   error
}

func (e *stageError) Error() string { return e.mount.src + ": " + e.err.Error() }

// openStaged opens every source with O_PATH as the user, in one helper
// process of theirs (pkg/asuser): the user's permissions apply to
// every directory along the path, while the file's own mode keeps applying
// to whoever uses it later. The user's own sources must all open; a
// module's that does not exist is left out. It returns the files and the
// mounts they are for, in order; on an error (a *stageError) none is left
// open.
func openStaged(cred credential, mounts []stagedMount) (held []*os.File, keep []stagedMount, err error) {
	wants := make([]asuser.Want, len(mounts))
	for i, sm := range mounts {
		wants[i] = asuser.Want{Path: sm.src, Flags: unix.O_PATH, Optional: sm.module}
	}
	files, err := asuser.OpenFiles(cred, wants)
	if err != nil {
		var pe *os.PathError
		for _, sm := range mounts {
			if errors.As(err, &pe) && pe.Path == sm.src {
				return nil, nil, &stageError{sm, pe.Err}
			}
		}
		return nil, nil, err
	}
	for i, f := range files {
		if f != nil {
			held, keep = append(held, f), append(keep, mounts[i])
		}
	}
	return held, keep, nil
}

// stageMount bind-mounts what f (opened as the user) refers to on stage, in
// the daemon's mount namespace: the kernel will not bind from an fd of
// another namespace into the container's, and a path the user controls could
// be swapped for a symlink between the check and the mount. The runtime then
// binds stage, a path only root controls (in a directory only root may
// write, created anew: nothing there to follow). Stages are unmounted at
// teardown (everything under the bundle is).
func stageMount(f *os.File, stage string) (string, error) {
	st, err := statNoSync(int(f.Fd()), "", unix.AT_EMPTY_PATH)
	if err != nil {
		return "", err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		if err := os.Mkdir(stage, 0o700); err != nil {
			return "", err
		}
	} else if err := createFile(stage, nil); err != nil {
		return "", err
	}
	src := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	if err := unix.Mount(src, stage, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return "", fmt.Errorf("bind: %w", err)
	}
	return stage, nil
}

// checkUserDestinations refuses a user's mount whose destination, with the
// image's symlinks followed inside root, is the root itself or the
// daemon's wire.ReservedDir (a symlink in the user's image, /x -> /.podman-hpc,
// would otherwise let --container-mounts=DIR:/x land there). The request's
// own paths were checked as written (wire.ParseUserMount).
func checkUserDestinations(root string, mounts []wire.UserMount) error {
	dsts := make([]string, len(mounts))
	for i, um := range mounts {
		dsts[i] = um.Dst
	}
	dst, resolved, err := reservedDestination(root, dsts)
	switch {
	case err != nil:
		return wire.OptionErrorf("--container-mounts", "destination %s: %w", dst, err)
	case resolved != "":
		return wire.OptionErrorf("--container-mounts", "destination %s leads to %s in the image, which podman-hpc keeps for itself; pick another destination", dst, resolved)
	}
	return nil
}

// checkImageDestinations refuses a container whose image leads one of the
// daemon's own mounts (the home, /tmp, /proc) to the root or into
// wire.ReservedDir through a symlink of its own (/tmp -> /.podman-hpc):
// only what the daemon means to put there goes there (a module's files,
// written there).
func checkImageDestinations(root string, mounts []specs.Mount) error {
	var dsts []string
	for _, m := range mounts {
		if !wire.InReserved(m.Destination) {
			dsts = append(dsts, m.Destination)
		}
	}
	dst, resolved, err := reservedDestination(root, dsts)
	switch {
	case err != nil:
		return fmt.Errorf("the image's %s: %w", dst, err)
	case resolved != "":
		return fmt.Errorf("the image's %s leads to %s, which podman-hpc keeps for itself: the image cannot run as it is (fix its symlink)", dst, resolved)
	}
	return nil
}

// reservedDestination resolves each of dsts inside root and returns the
// first that leads to the root itself or into wire.ReservedDir, with where
// it leads ("" for none), or the one that could not be resolved.
func reservedDestination(root string, dsts []string) (dst, resolved string, err error) {
	if len(dsts) == 0 {
		return "", "", nil
	}
	rootFd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return root, "", err
	}
	defer unix.Close(rootFd)
	for _, dst := range dsts {
		resolved, err := resolveInRoot(rootFd, dst)
		if err != nil {
			return dst, "", err
		}
		if resolved == "/" || wire.InReserved(resolved) {
			return dst, resolved, nil
		}
	}
	return "", "", nil
}

// resolveInRoot returns where dst leads inside the root open at rootFd, as
// a path of the container's: its longest existing prefix resolved (the
// image's symlinks followed, inside the root), then the rest as written.
func resolveInRoot(rootFd int, dst string) (string, error) {
	rootPath, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", rootFd))
	if err != nil {
		return "", err
	}
	rest := ""
	for p := path.Clean("/" + dst); ; p = path.Dir(p) {
		rel := strings.TrimPrefix(p, "/")
		if rel == "" {
			rel = "."
		}
		fd, err := unix.Openat2(rootFd, rel, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
		if (errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)) && p != "/" {
			rest = path.Join(path.Base(p), rest)
			continue
		}
		if err != nil {
			return "", err
		}
		got, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		unix.Close(fd)
		if err != nil {
			return "", err
		}
		if got == rootPath {
			return path.Join("/", rest), nil
		}
		inside, ok := strings.CutPrefix(got, rootPath+"/")
		if !ok {
			return "", fmt.Errorf("resolves outside the container's root (%s)", got)
		}
		return path.Join("/", inside, rest), nil
	}
}
