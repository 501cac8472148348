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
// of their own, never in the container's, whose mount namespace the
// runtime filled: a mount made there by a process of that namespace (the
// runtime's binds, the masked paths, the init) is not locked, and a
// capability there would unmount it and show what it hides, or make the
// read-only root writable. The tasks' user namespace maps root to the job
// user, as the container's does (/proc/self/uid_map reads "0 UID 1", as
// under pyxis), and their mount namespace is a copy of the container's
// made into it, once the daemon has sealed the container's mounts
// (nosuid, nodev, read-only): the kernel locks every mount of a copy made
// into another user namespace, and its flags (mount_namespaces(7)), so
// that none can be unmounted, moved or remounted from there. Only that
// mount namespace, and with --container-unshare=uts a copy of the
// container's UTS namespace, are the tasks' user namespace's own: their
// capabilities reach nothing else (no file but the job user's own, no
// other namespace, no process outside it; the container's init and
// entrypoint are in the container's user namespace, a sibling). A
// container without remap-root has none of this: its tasks hold no
// capability.

// ownNames are the namespaces the holder makes for the tasks: they join
// these from it, the others from the container's init.
var ownNames = []string{"user", "uts", "mnt"}

// nest moves the tasks of a remap-root container into their own user
// namespace: podman-hpc-init joins the container's PID, mount (and UTS)
// namespaces and starts a holder there, in the container's PID namespace
// (it ends with the init), that makes the tasks' namespaces; the tasks then
// join, in this order, the container's IPC and network namespaces (their
// owner, the container's user namespace, is out of reach from the tasks'),
// the tasks' user namespace, and its UTS and mount namespaces. It does
// nothing for a container without remap-root, or where podman-hpcd stands
// in for podman-hpc-init (a Go program cannot fork a holder without exec),
// nor for root's jobs (the plugin leaves root nothing): the tasks then hold
// no capability.
func (c *container) nest(ctx context.Context) error {
	bin, err := initBinary()
	if !c.req.RemapRoot || c.req.UID == 0 || err != nil || filepath.Base(bin) != initName {
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
	self, err := os.Open("/proc/self/ns/user")
	if err != nil {
		return fmt.Errorf("nest the tasks' namespaces: %w", err)
	}
	defer self.Close()
	pidns, err := os.Open(fmt.Sprintf("/proc/%d/ns/pid", c.initPid))
	if err != nil {
		return fmt.Errorf("nest the tasks' namespaces: %w", err)
	}
	defer pidns.Close()
	// Root there is the job user, as in the container's.
	args := []string{"nest", strconv.FormatUint(uint64(c.req.UID), 10), strconv.FormatUint(uint64(c.req.GID), 10)}
	extra := []*os.File{pidns, mntns}
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
	// Held through a pidfd: a holder gone with the container's init
	// (its PID namespace) is never confused with a process that took its
	// pid, nor killed in its place.
	holder, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("nest the tasks' namespaces: the holder (pid %d): %w", pid, err)
	}
	defer unix.Close(holder)
	own, err := openOwn(pid, c.nsNames)
	if err == nil {
		err = checkOwn(pid, own["user"], self, userns, own["mnt"], pidns)
	}
	if err == nil {
		// A process of the container's: the step's too.
		err = c.place.Join(pid)
	}
	if err != nil {
		closeAll(slices.Collect(maps.Values(own)))
		unix.PidfdSendSignal(holder, unix.SIGKILL, nil, 0)
		return err
	}
	c.nestPid = pid
	c.nsFiles, c.nsNames = tasksOrder(c.nsFiles, c.nsNames, own)
	return nil
}

// openOwn opens, from the holder pid, the tasks' own namespaces of those
// named in names.
func openOwn(pid int, names []string) (map[string]*os.File, error) {
	out := map[string]*os.File{}
	for _, n := range ownNames {
		if !slices.Contains(names, n) {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", pid, n))
		if err != nil {
			closeAll(slices.Collect(maps.Values(out)))
			return nil, fmt.Errorf("open the tasks' own %s namespace: %w", n, err)
		}
		out[n] = f
	}
	return out, nil
}

// checkOwn makes sure that the process pid is in the container's PID
// namespace pidns, and that user, its user namespace, is a child of the
// daemon's user namespace parent, other than the container's, and owns
// the mount namespace mnt: the namespaces opened are the holder's, not
// those of a process that took its pid, nor of one of the container's.
func checkOwn(pid int, user, parent, container, mnt, pidns *os.File) error {
	sameFD := func(a *os.File, fd int) bool {
		defer unix.Close(fd)
		var x, y unix.Stat_t
		return unix.Fstat(int(a.Fd()), &x) == nil && unix.Fstat(fd, &y) == nil && x.Dev == y.Dev && x.Ino == y.Ino
	}
	var x, y unix.Stat_t
	if unix.Stat(fmt.Sprintf("/proc/%d/ns/pid", pid), &x) != nil || unix.Fstat(int(pidns.Fd()), &y) != nil || x.Dev != y.Dev || x.Ino != y.Ino {
		return errors.New("nest the tasks' namespaces: the holder is not in the container's PID namespace")
	}
	if unix.Fstat(int(user.Fd()), &x) != nil || unix.Fstat(int(container.Fd()), &y) != nil || x.Dev == y.Dev && x.Ino == y.Ino {
		return errors.New("nest the tasks' namespaces: the tasks' user namespace is the container's")
	}
	up, err := unix.IoctlRetInt(int(user.Fd()), unix.NS_GET_PARENT)
	if err != nil || !sameFD(parent, up) {
		return errors.New("nest the tasks' namespaces: the tasks' user namespace is not a child of the daemon's")
	}
	owner, err := unix.IoctlRetInt(int(mnt.Fd()), unix.NS_GET_USERNS)
	if err != nil || !sameFD(user, owner) {
		return errors.New("nest the tasks' namespaces: the tasks' mount namespace is not their user namespace's")
	}
	return nil
}

// tasksOrder returns the namespaces the tasks join, in order: the
// container's but those the tasks have of their own (closed here), then
// the tasks' own. The container's IPC and network namespaces are its user
// namespace's: they are joined before the tasks' user namespace, from
// which their owner is out of reach.
func tasksOrder(files []*os.File, names []string, own map[string]*os.File) ([]*os.File, []string) {
	var outF []*os.File
	var outN []string
	for i, n := range names {
		if slices.Contains(ownNames, n) {
			files[i].Close()
			continue
		}
		outF, outN = append(outF, files[i]), append(outN, n)
	}
	for _, n := range ownNames {
		if f := own[n]; f != nil {
			outF, outN = append(outF, f), append(outN, n)
		}
	}
	return outF, outN
}
