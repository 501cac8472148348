package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/internal/config"
	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

// pickRuntime returns the configured runtime, or with "auto" the first of
// crun and runc that starts a real container on this node (probe: see
// Preflight).
func pickRuntime(ctx context.Context, cfg config.Config, probe oci.Probe) (*oci.Runtime, error) {
	candidates := oci.DefaultRuntimes
	if cfg.Runtime != "auto" {
		candidates = []string{cfg.Runtime}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return oci.Detect(ctx, candidates, runtimeSetup(cfg.StateDir, cgroupRoot), probe)
}

// cgroupRoot is where the host mounts its cgroups.
const cgroupRoot = "/sys/fs/cgroup"

// runtimeSetup says how the runtime binaries are driven here. Either runs
// from a sealed in-memory copy, which spares it copying itself at every
// start (oci.Runtime.ExecSealed), in a mount namespace of its own
// (withOwnMountNS). crun runs
// without cgroups: the tasks stay in Slurm's, the container's init (which
// only waits) needs none, and creating and removing a cgroup in every
// hierarchy is most of a runtime's cost on a v1 host. crun 1.8 still
// refuses a hybrid host whose cgroup2 hierarchy holds controllers, even
// with cgroups off; there it runs in a mount namespace of its own where that
// hierarchy is not mounted (the containers, copied from that namespace, do
// not see it either). runc makes its cgroups as usual.
func runtimeSetup(stateDir, cgroups string) oci.Setup {
	return func(path string) (*oci.Runtime, error) {
		rt := &oci.Runtime{Command: path, Root: filepath.Join(stateDir, "runtime")}
		rt.ExecSealed()
		if filepath.Base(path) != "crun" {
			return withOwnMountNS(rt, stateDir, nil)
		}
		rt.Args = []string{"--cgroup-manager=disabled"}
		rt.RemovesOwnState = true
		layout, controllers, err := oci.ReadCgroupLayout(cgroups)
		if err != nil {
			return nil, err
		}
		if layout != oci.CgroupHybrid || len(controllers) == 0 {
			return withOwnMountNS(rt, stateDir, nil)
		}
		return withOwnMountNS(rt, stateDir, func() error {
			return unix.Unmount(filepath.Join(cgroups, "unified"), unix.MNT_DETACH)
		})
	}
}

// withOwnMountNS gives rt a mount namespace of its own (setup, if any, runs
// in it first): the runtime runs there, and so do the containers' roots
// as the runtime is given them (publishRoot), which the job user reaches
// through the bundle: on the host they are empty directories of root's, so
// that no process of the user's on the node can open a container's root
// from outside it, to write into state_dir through it or to hold its file
// system past the container's end (reviews of 2026-12-06). The namespace
// sees the daemon's own mounts under the state directory, made after it.
func withOwnMountNS(rt *oci.Runtime, stateDir string, setup func() error) (*oci.Runtime, error) {
	if err := oci.MakeShared(stateDir); err != nil {
		return nil, err
	}
	var err error
	rt.NS, err = oci.NewMountNS(setup)
	return rt, err
}

// probe starts a container on an empty root, running the daemon's init as
// nobody, and removes it: Preflight's probe of the runtime alone, when an
// image's root cannot be had (imageProbe).
func probe(stateDir string) oci.Probe {
	return func(ctx context.Context, rt *oci.Runtime) error {
		dir, err := os.MkdirTemp(stateDir, "probe-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
			return err
		}
		init, err := initBinary()
		if err != nil {
			return err
		}
		spec, err := oci.NewSpec(
			oci.WithRootfs(filepath.Join(dir, "rootfs"), true),
			oci.WithProcess([]string{initPath, "init"}, nil, "/"),
			oci.WithMounts(oci.BindMount(init, initPath, "ro")),
			// A runtime that cannot apply it fails here, not every job.
			oci.WithSeccomp(false),
		)
		if err != nil {
			return err
		}
		if err := writeSpec(filepath.Join(dir, "config.json"), spec); err != nil {
			return err
		}
		id := filepath.Base(dir)
		defer rt.Delete(context.WithoutCancel(ctx), id, oci.DeleteOpts{Force: true})
		if err := rt.Run(ctx, id, oci.RunOpts{Bundle: dir}); err != nil {
			return err
		}
		st, err := rt.State(ctx, id)
		if err != nil {
			return err
		}
		if st.Status != "running" {
			return fmt.Errorf("probe container is %s, not running", st.Status)
		}
		return nil
	}
}
