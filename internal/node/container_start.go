package node

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// The container's spec, its start, and what the tasks join.

// buildSpec writes the container's OCI spec into its bundle, once every
// mount point exists in its root, and returns it.
func buildSpec(rt *oci.Runtime, c *container, cred credential, mounts []specs.Mount, hk *prepared, readonly bool) (*specs.Spec, error) {
	init, err := initBinary()
	if err != nil {
		return nil, err
	}
	args := []string{initPath, "init"}
	if c.req.Entrypoint {
		args = append(slices.Clone(c.img.Entrypoint), args...)
	}
	if c.img.Apptainer {
		args = append(apptainerArgs(), args...)
	}
	opts := []oci.SpecOpt{
		oci.WithRootfs(c.publicRoot(), readonly && !hk.writesRoot),
		oci.WithProcess(args, withPath(c.img.Env), "/"),
		oci.WithUser(c.req.UID, c.req.GID, cred.Groups),
		oci.WithMounts(mounts...),
		oci.WithNamespaces(c.req.Unshare...),
		// The init, the image's entrypoint and what it leaves running
		// are confined as the tasks are (spank/harden.c).
		oci.WithSeccomp(c.req.RemapRoot),
		hk.opt,
		// Last, so that no mount before it (the user's, a module's) can
		// cover the container's first process.
		oci.WithMounts(oci.BindMount(init, initPath, "ro", "nosuid", "nodev")),
	}
	if c.img.Apptainer {
		opts = append(opts, withApptainerVars(c.req.Image))
	}
	if c.req.RemapRoot {
		opts = append(opts, oci.WithRemappedRoot(c.req.UID, c.req.GID))
	} else {
		opts = append(opts, oci.WithUserNamespace(c.req.UID, c.req.GID))
	}
	if slices.Contains(c.req.Unshare, specs.IPCNamespace) {
		opts = append(opts, oci.WithPrivateIPC())
	}
	spec, err := oci.NewSpec(opts...)
	if err != nil {
		return nil, err
	}
	if err := makeMountpoints(c.rootfs, spec.Mounts); err != nil {
		return nil, err
	}
	// Once every mount point exists: a dangling symlink of the image's
	// leads somewhere now.
	if err := checkUserDestinations(c.rootfs, c.req.Mounts); err != nil {
		return nil, err
	}
	// And the daemon's own (the home, /tmp, the modules'): the last, the
	// init's, is the one mount that belongs there.
	if err := checkImageDestinations(c.rootfs, spec.Mounts[:len(spec.Mounts)-1]); err != nil {
		return nil, err
	}
	if err := publishRoot(rt, c, readonly && !hk.writesRoot); err != nil {
		return nil, err
	}
	if err := writeSpec(filepath.Join(c.bundle, "config.json"), spec); err != nil {
		return nil, err
	}
	return spec, nil
}

// start runs the container (its init, or the image's entrypoint or a SIF's
// environment scripts first: runsFirst) and
// waits until it is running its init, which it leaves at the lowest
// priority. With an entrypoint, the namespaces the tasks join are opened
// between the runtime's create and start, before any of the image's code
// runs: an entrypoint that made namespaces of its own (unshare) cannot
// have them handed to slurmstepd, or entered by the daemon; and its mounts
// are sealed then (nosuid, nodev: oci.SealRoot), as the tasks find them,
// so the image's code first runs with them so too (a review saw a SIF's env
// scripts run before; readonly is the root's, as attachable's).
func (m *manager) start(ctx context.Context, c *container, spec *specs.Spec, hk *prepared, readonly bool, log *slog.Logger) (err error) {
	pidFile := filepath.Join(c.bundle, "init.pid")
	c.output = oci.NewOutput()
	opts := oci.RunOpts{Bundle: c.bundle, PidFile: pidFile, Output: c.output}
	first := c.runsFirst()
	if first {
		opts.Created = func(pid int) error {
			c.initPid = pid
			// Before the image's entrypoint runs: what it starts is
			// the step's too.
			if err := c.place.Join(pid); err != nil {
				return err
			}
			if err := c.openNamespaces(spec); err != nil {
				return err
			}
			return oci.SealRoot(c.nsFiles[len(c.nsFiles)-1], readonly)
		}
	}
	err = m.rt.Run(ctx, c.id, opts)
	if err != nil && ctx.Err() == nil {
		// runc 1.1 now and then loses its init under concurrent starts
		// ("error during container init: %!w(<nil>)"): once more, after
		// clearing what it left.
		log.Warn("container start failed, retrying once", "container", c.id, "err", err)
		closeAll(c.nsFiles)
		c.nsFiles, c.nsNames = nil, nil
		m.rt.Delete(ctx, c.id, oci.DeleteOpts{Force: true})
		err = m.rt.Run(ctx, c.id, opts)
	}
	m.hooks.logTimings(c, log)
	if err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	if c.initPid, err = readPid(pidFile); err != nil {
		return err
	}
	if c.initFD, err = unix.PidfdOpen(c.initPid, 0); err != nil {
		return fmt.Errorf("the container's init (pid %d): %w", c.initPid, err)
	}
	if !first {
		// The init has only started waiting: nothing of the image runs.
		if err := c.place.Join(c.initPid); err != nil {
			return err
		}
	}
	c.env = hk.env
	if first {
		if c.env, err = m.waitEntrypoint(ctx, c); err != nil {
			return err
		}
		// A shell's own variables (an entrypoint in bash exports PWD)
		// are not the image's: they would win over the tasks' own.
		c.env = withoutShellVars(c.env)
	}
	// The init runs: what writes from now on is what the entrypoint
	// left running, and gets a bounded share.
	c.output.Limit()
	// The init only waits: at the lowest priority, its death at the
	// removal (the container's mounts go with it) yields the CPU too.
	unix.Setpriority(unix.PRIO_PROCESS, c.initPid, oci.BackgroundNice)
	return nil
}

// attachable readies the running container for its tasks: the namespaces
// they join, opened; its root sealed (nosuid, nodev, and read-only unless
// writable); under remap-root, the tasks' own namespaces (nest.go); a
// private network's loopback up; the working directory.
func (c *container) attachable(ctx context.Context, spec *specs.Spec, readonly bool) error {
	if c.nsFiles == nil { // else opened at its creation (start)
		if err := c.openNamespaces(spec); err != nil {
			return err
		}
	}
	if err := oci.SealRoot(c.nsFiles[len(c.nsFiles)-1], readonly); err != nil {
		return err
	}
	if err := oci.SetPropagation(c.nsFiles[len(c.nsFiles)-1], propagation(c.req.Mounts)); err != nil {
		return wire.OptionErrorf("--container-mounts", "%w", err)
	}
	// Once the mounts are sealed: the tasks' copy locks them as they are.
	if err := c.nest(ctx); err != nil {
		return err
	}
	if slices.Contains(c.req.Unshare, specs.NetworkNamespace) {
		// A private network has its loopback down until someone raises it.
		lo := exec.CommandContext(ctx, "nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", c.initPid), "ip", "link", "set", "lo", "up")
		if out, err := lo.CombinedOutput(); err != nil {
			return fmt.Errorf("bring up the private network's loopback: %s: %w", strings.TrimSpace(string(out)), err)
		}
	}
	c.workdir = firstNonEmpty(c.req.Workdir, c.img.WorkingDir, "/")
	return nil
}

// openNamespaces opens the namespaces the tasks join, in the order they must
// join them: the user namespace first (its capabilities are needed for the
// others), the mount namespace last.
func (c *container) openNamespaces(spec *specs.Spec) error {
	order := []specs.LinuxNamespaceType{specs.UserNamespace, specs.IPCNamespace, specs.UTSNamespace, specs.NetworkNamespace, specs.MountNamespace}
	proc := map[specs.LinuxNamespaceType]string{specs.UserNamespace: "user", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts", specs.NetworkNamespace: "net", specs.MountNamespace: "mnt"}
	for _, t := range order {
		if !slices.ContainsFunc(spec.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t }) {
			continue
		}
		f, err := os.Open(fmt.Sprintf("/proc/%d/ns/%s", c.initPid, proc[t]))
		if err != nil {
			return fmt.Errorf("open the container's %s namespace: %w", proc[t], err)
		}
		c.nsFiles = append(c.nsFiles, f)
		c.nsNames = append(c.nsNames, proc[t])
	}
	return nil
}
