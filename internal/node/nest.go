package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// A remap-root container's tasks hold capabilities (spank/stepd.c), as the
// root of an enroot container does under pyxis: mount a tmpfs, set the
// hostname of their own UTS namespace. They hold them in a user namespace
// nested in the container's, never in the container's own, whose mount
// namespace the runtime filled: a mount made there by a process of that
// namespace (the runtime's binds, the masked paths, the init) is not
// locked, and a capability there would unmount it and show what it hides.
// The tasks' mount namespace is instead a copy of the container's made
// into the nested user namespace, once the daemon has sealed the
// container's mounts (nosuid, nodev, read-only): the kernel locks every
// mount of such a copy, and their flags (mount_namespaces(7)), so that
// none can be unmounted, moved or remounted from there. Only the mount
// namespace, and with --container-unshare=uts the UTS namespace, are the
// nested user namespace's own: the tasks' capabilities reach nothing else
// (no file but the job user's own, no other namespace, no process outside
// it). A container without remap-root is not nested: its tasks hold no
// capability.

// nestedNames are the namespaces the nest's holder has of its own: the
// tasks join these from it, the others from the container's init.
var nestedNames = []string{"user", "uts", "mnt"}

// nest moves the tasks of a remap-root container into the nested user
// namespace: podman-hpc-init (C: only a single-threaded process can join a
// user namespace) joins the container's namespaces and starts a holder
// there, in the container's PID namespace (it ends with the init), that
// makes the nested namespaces; the tasks then join, in this order, the
// container's IPC and network namespaces, the nested user namespace, and
// the nested UTS and mount namespaces. It does nothing for a container
// without remap-root, or where podman-hpcd stands in for podman-hpc-init
// (the tasks then hold no capability).
func (c *container) nest(ctx context.Context) error {
	bin, err := initBinary()
	if !c.req.RemapRoot || err != nil || filepath.Base(bin) != initName {
		return nil
	}
	at := func(name string) *os.File {
		if i := slices.Index(c.nsNames, name); i >= 0 {
			return c.nsFiles[i]
		}
		return nil
	}
	userns, mntns, utsns := at("user"), at("mnt"), at("uts")
	if userns == nil || mntns == nil {
		return fmt.Errorf("nest the tasks' namespaces: the container has no user or mount namespace")
	}
	pidns, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", c.initPid))
	if err != nil {
		return fmt.Errorf("nest the tasks' namespaces: %w", err)
	}
	defer pidns.Close()
	// The ids the container's user namespace maps the job user to.
	args := []string{"nest", "0", "0"}
	extra := []*os.File{userns, pidns, mntns}
	if utsns != nil {
		args = append(args, "uts")
		extra = append(extra, utsns)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.ExtraFiles = extra
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			err = fmt.Errorf("%s: %w", msg, err)
		}
		return fmt.Errorf("nest the tasks' namespaces: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("nest the tasks' namespaces: podman-hpc-init said %q", out)
	}
	nested, err := openNested(pid, c.nsNames)
	if err != nil {
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	if err := checkNested(nested["user"], userns, nested["mnt"]); err != nil {
		closeAll(slices.Collect(maps.Values(nested)))
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	// A process of the container's: the step's too.
	if err := c.place.Join(pid); err != nil {
		closeAll(slices.Collect(maps.Values(nested)))
		unix.Kill(pid, unix.SIGKILL)
		return err
	}
	c.nestPid = pid
	c.nsFiles, c.nsNames = nestedOrder(c.nsFiles, c.nsNames, nested)
	return nil
}

// openNested opens, from the holder pid, the nested namespaces of those
// named in names.
func openNested(pid int, names []string) (map[string]*os.File, error) {
	out := map[string]*os.File{}
	for _, n := range nestedNames {
		if !slices.Contains(names, n) {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, n))
		if err != nil {
			closeAll(slices.Collect(maps.Values(out)))
			return nil, fmt.Errorf("open the tasks' nested %s namespace: %w", n, err)
		}
		out[n] = f
	}
	return out, nil
}

// checkNested makes sure that user is a child of the container's user
// namespace parent, and owns the mount namespace mnt: the namespaces
// opened are the holder's, not those of a process that took its pid.
func checkNested(user, parent, mnt *os.File) error {
	same := func(a *os.File, fd int) bool {
		defer unix.Close(fd)
		var x, y unix.Stat_t
		return unix.Fstat(int(a.Fd()), &x) == nil && unix.Fstat(fd, &y) == nil && x.Dev == y.Dev && x.Ino == y.Ino
	}
	up, err := unix.IoctlRetInt(int(user.Fd()), unix.NS_GET_PARENT)
	if err != nil || !same(parent, up) {
		return errors.New("nest the tasks' namespaces: the nested user namespace is not the container's child")
	}
	owner, err := unix.IoctlRetInt(int(mnt.Fd()), unix.NS_GET_USERNS)
	if err != nil || !same(user, owner) {
		return errors.New("nest the tasks' namespaces: the nested mount namespace is not the nested user namespace's")
	}
	return nil
}

// nestedOrder returns the namespaces the tasks join, in order: the
// container's own but those nested (closed here), then the nested ones.
// The container's IPC and network namespaces are its user namespace's:
// they are joined before the nested user namespace, from which their
// owner is out of reach.
func nestedOrder(files []*os.File, names []string, nested map[string]*os.File) ([]*os.File, []string) {
	var outF []*os.File
	var outN []string
	for i, n := range names {
		if slices.Contains(nestedNames, n) {
			files[i].Close()
			continue
		}
		outF, outN = append(outF, files[i]), append(outN, n)
	}
	for _, n := range nestedNames {
		if f := nested[n]; f != nil {
			outF, outN = append(outF, f), append(outN, n)
		}
	}
	return outF, outN
}
