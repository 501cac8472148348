package node

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

// unmountStale unmounts what a previous daemon left mounted below stateDir,
// but in the bundles of containers to adopt (keep), and returns how many.
// It runs before the runtime is set up, which may bind stateDir on itself
// (runtimeSetup) and so hide them.
func unmountStale(stateDir string, keep map[string]*record, log *slog.Logger) int {
	mounts, err := oci.MountsUnder(stateDir)
	if err != nil {
		log.Warn("list stale mounts", "err", err)
	}
	// The state directory itself may be a mount (runtimeSetup's): only
	// what is below it is a previous daemon's.
	mounts = slices.DeleteFunc(mounts, func(mp string) bool {
		for bundle := range keep {
			if strings.HasPrefix(mp, bundle+"/") {
				return true
			}
		}
		return mp == stateDir
	})
	for _, mp := range mounts {
		if err := oci.Unmount(mp, false); err != nil {
			oci.Unmount(mp, true)
		}
	}
	return len(mounts)
}

// cleanStale adopts the containers of a previous daemon whose init runs
// (adopt: keep, from adoptable), and removes the other containers and
// bundles it left; unmounted says how many of its mounts unmountStale
// removed. Tasks that joined one keep running in its namespaces, and a
// writable container's upper layer is still theirs: such a bundle is
// removed only once no process is left in the container's mount namespace.
func (m *manager) cleanStale(ctx context.Context, unmounted int, keep map[string]*record) {
	dir := filepath.Join(m.stateDir, "containers")
	entries, _ := os.ReadDir(dir)
	kept, adopted := 0, 0
	for _, e := range entries {
		bundle := filepath.Join(dir, e.Name())
		if r := keep[bundle]; r != nil {
			err := m.adopt(ctx, bundle, r)
			if err == nil {
				adopted++
				m.log.Info("container adopted from the previous daemon", "container", r.ID, "job", r.Req.Job, "step", r.Req.Step, "named", r.Named)
				continue
			}
			m.log.Warn("container not adopted; removing it once its tasks are gone", "container", r.ID, "err", err)
			// Its mounts were kept for it: unmount them now.
			mounts, _ := oci.MountsUnder(bundle)
			for _, mp := range mounts {
				if err := oci.Unmount(mp, false); err != nil {
					oci.Unmount(mp, true)
				}
			}
		}
		ns, alive := tasksMountNS(bundle)
		if id, err := os.ReadFile(filepath.Join(bundle, bundleIDFile)); err == nil {
			if err := m.rt.Delete(ctx, string(id), oci.DeleteOpts{Force: true}); err != nil {
				m.log.Warn("stale container: runtime delete", "container", string(id), "err", err)
			}
		}
		if alive && mountNSInUse(ns) {
			kept++
			go m.removeWhenUnused(ctx, bundle, ns)
			continue
		}
		os.RemoveAll(bundle)
	}
	// The writable layers of the containers not adopted: a mount that a
	// task still holds keeps its file's blocks until it goes.
	layers := m.writes.cleanStale()
	// images/ held the image mounts of daemons before detached mounts.
	os.RemoveAll(filepath.Join(m.stateDir, "images"))
	// What saves and exports in progress left: sandboxes (squashfs.SquashTree),
	// and the files of daemons before 0.3, which wrote them here rather than
	// in the cache's scratch directory (emptied by store.Open).
	for _, pattern := range []string{"save-*.sqfs", "export-*.sqfs", "squash-sandbox-*"} {
		left, _ := filepath.Glob(filepath.Join(m.stateDir, pattern))
		for _, p := range left {
			os.Remove(p)
		}
	}
	if len(entries)+unmounted+layers > 0 {
		m.log.Info("cleaned state of a previous daemon", "containers", len(entries), "adopted", adopted, "mounts", unmounted, "kept_in_use", kept, "writable_layers_removed", layers)
	}
}

// staleCheckEvery is how often a stale bundle in use is looked at again.
const staleCheckEvery = time.Second

// removeWhenUnused removes bundle once no process is in the mount
// namespace ns, or gives up when ctx ends (the next daemon looks again).
func (m *manager) removeWhenUnused(ctx context.Context, bundle string, ns nsID) {
	t := time.NewTicker(staleCheckEvery)
	defer t.Stop()
	for mountNSInUse(ns) {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
	if err := os.RemoveAll(bundle); err != nil {
		m.log.Warn("remove stale bundle", "bundle", bundle, "err", err)
		return
	}
	m.log.Info("stale bundle removed: its last task ended", "bundle", bundle)
}

// nsID identifies a namespace (its nsfs inode).
type nsID struct{ dev, ino uint64 }

// tasksMountNS returns the mount namespace of the bundle's tasks: the
// tasks' own its record names (nest.go), else its init's (initMountNS).
// That one is looked for without its holder, which a task may have
// killed: the tasks stay in it.
func tasksMountNS(bundle string) (nsID, bool) {
	init, alive := initMountNS(bundle)
	if r, err := readRecord(bundle); err == nil && r.NestPid != 0 {
		return nsID{r.NestMntNS[0], r.NestMntNS[1]}, true
	}
	return init, alive
}

// initMountNS returns the mount namespace of the bundle's init, if the
// pid the runtime wrote is still our init (not a recycled pid).
func initMountNS(bundle string) (nsID, bool) {
	b, err := os.ReadFile(filepath.Join(bundle, "init.pid"))
	if err != nil {
		return nsID{}, false
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 0 {
		return nsID{}, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Equal(cmdline, []byte(initPath+"\x00init\x00")) {
		return nsID{}, false
	}
	return mountNSOf(fmt.Sprintf("/proc/%d/ns/mnt", pid))
}

func mountNSOf(path string) (nsID, bool) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nsID{}, false
	}
	return nsID{st.Dev, st.Ino}, true
}

// mountNSUsers counts the processes in the mount namespace ns but except.
func mountNSUsers(ns nsID, except int) int {
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/mnt")
	n := 0
	for _, p := range procs {
		if got, ok := mountNSOf(p); ok && got == ns && p != fmt.Sprintf("/proc/%d/ns/mnt", except) {
			n++
		}
	}
	return n
}

// mountNSHeld reports whether a process other than this one holds the
// mount namespace ns open (a file descriptor of its nsfs file).
func mountNSHeld(ns nsID) bool {
	self := os.Getpid()
	want := fmt.Sprintf("mnt:[%d]", ns.ino)
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		if pid, _ := strconv.Atoi(filepath.Base(p)); pid == self {
			continue
		}
		fds, _ := os.ReadDir(p + "/fd")
		for _, fd := range fds {
			if l, err := os.Readlink(p + "/fd/" + fd.Name()); err == nil && l == want {
				return true
			}
		}
	}
	return false
}

// mountNSInUse reports whether any process is in the mount namespace ns.
func mountNSInUse(ns nsID) bool {
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/mnt")
	for _, p := range procs {
		if got, ok := mountNSOf(p); ok && got == ns {
			return true
		}
	}
	return false
}
