package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

// pickRuntime returns the configured runtime, or with "auto" the first of
// crun and runc that starts a real container on this node.
func pickRuntime(ctx context.Context, cfg Config) (*oci.Runtime, error) {
	candidates := oci.DefaultRuntimes
	if cfg.Runtime != "auto" {
		candidates = []string{cfg.Runtime}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return oci.Detect(ctx, candidates, filepath.Join(cfg.StateDir, "runtime"), probe(cfg.StateDir))
}

// probe starts the same kind of container the jobs get, on an empty root,
// running the daemon's init as nobody, and removes it.
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
		self, err := os.Executable()
		if err != nil {
			return err
		}
		spec, err := oci.NewSpec(
			oci.WithRootfs(filepath.Join(dir, "rootfs"), true),
			oci.WithProcess([]string{initPath, "init"}, nil, "/"),
			oci.WithMounts(oci.BindMount(self, initPath, "ro")),
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
