// Command runtime measures the OCI runtime's own CPU cost for one
// container, the floor under the daemon's "CPU per container start": it
// copies a container's config.json as the daemon wrote it (every mount,
// namespace, seccomp filter and masked path kept), gives it a bundle of its
// own, and runs and removes it -n times the way the daemon does (pkg/oci:
// run --detach from a sealed copy of the runtime, in a mount namespace of
// its own, the init killed through a pidfd and the state removed without
// a second exec). It prints the median and the minimum of the runtime's
// CPU time (user + system, of the runtime and the children it waits for)
// per container, in ms:
//
//	runtime_cpu_ms 4.81
//	runtime_cpu_min_ms 4.02
//
// Run as root on a node, beside a container the daemon made (bench.sh).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
)

func main() {
	spec := flag.String("spec", "", "a container's config.json, as the daemon wrote it")
	runtime := flag.String("runtime", "/usr/bin/crun", "the OCI runtime")
	runs := flag.Int("n", 40, "containers to run and remove")
	flag.Parse()
	if err := run(*spec, *runtime, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "runtime bench:", err)
		os.Exit(1)
	}
}

func run(specPath, runtime string, runs int) error {
	if specPath == "" || runs < 1 {
		return errors.New("usage: runtime -spec CONFIG.JSON [-runtime PATH] [-n RUNS]")
	}
	work, err := os.MkdirTemp("/run", "podman-hpc-bench-runtime.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	// The runtime reaches the root from the container's user namespace,
	// as the job's user: the way there must let it pass.
	if err := os.Chmod(work, 0o755); err != nil {
		return err
	}
	bundle := filepath.Join(work, "bundle")
	if err := makeBundle(specPath, bundle); err != nil {
		return err
	}
	ns, err := oci.NewMountNS(hideUnified)
	if err != nil {
		return err
	}
	defer ns.Close()
	rt := &oci.Runtime{Command: runtime, Root: filepath.Join(work, "state"), NS: ns, RemovesOwnState: true}
	if filepath.Base(runtime) == "crun" {
		rt.Args = []string{"--cgroup-manager=disabled"} // as the daemon runs it
	}
	rt.ExecSealed()
	ctx := context.Background()
	var cpu, wall, inside []float64
	for i := range runs {
		id := "bench-" + strconv.Itoa(i)
		before := childrenCPU()
		t0 := time.Now()
		err := rt.Run(ctx, id, oci.RunOpts{Bundle: bundle, PidFile: filepath.Join(work, "pid")})
		wall = append(wall, float64(time.Since(t0).Microseconds())/1000)
		if err != nil {
			return err
		}
		ms, err := initCPU(filepath.Join(work, "pid"))
		if err != nil {
			return err
		}
		inside = append(inside, ms)
		if err := remove(ctx, rt, id, filepath.Join(work, "pid")); err != nil {
			return err
		}
		cpu = append(cpu, childrenCPU()-before)
	}
	slices.Sort(cpu)
	slices.Sort(wall)
	slices.Sort(inside)
	fmt.Printf("runtime_cpu_ms %.2f\nruntime_cpu_min_ms %.2f\nruntime_container_cpu_ms %.2f\nruntime_run_ms %.2f\n",
		cpu[len(cpu)/2], cpu[0], inside[len(inside)/2], wall[len(wall)/2])
	return nil
}

// initCPU is the CPU time, in ms, the container's first process has used
// so far: the runtime's work inside the container (its mounts, pivot_root,
// seccomp) before that process exec'd the init, which only waits. The
// runtime detaches that process, so no one who waits for it counts it.
func initCPU(pidFile string) (float64, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	b, err = os.ReadFile("/proc/" + strings.TrimSpace(string(b)) + "/schedstat")
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64)
	return float64(ns) / 1e6, err
}

// remove kills the container's init through a pidfd and removes it, as the
// daemon's teardown does.
func remove(ctx context.Context, rt *oci.Runtime, id, pidFile string) error {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return rt.Delete(ctx, id, oci.DeleteOpts{Force: true, Pidfd: fd})
}

// childrenCPU is the CPU time, in ms, of the children this process waited
// for so far.
func childrenCPU() float64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e6
}

// hideUnified hides a hybrid host's cgroup2 hierarchy from crun, as the
// daemon's runtime namespace does (crun refuses one that holds
// controllers, even with cgroups off); elsewhere there is nothing there.
func hideUnified() error {
	err := unix.Unmount("/sys/fs/cgroup/unified", unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// makeBundle writes a bundle at dir for the container whose config.json is
// at specPath: the same spec, with a root of its own holding a mount point
// for every mount, and the sources that lie in the original bundle (its
// account files, its staged mounts) replaced by empty ones of the same
// kind.
func makeBundle(specPath, dir string) error {
	b, err := os.ReadFile(specPath)
	if err != nil {
		return err
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s: %w", specPath, err)
	}
	if s.Root == nil || s.Process == nil {
		return fmt.Errorf("%s: no root or process", specPath)
	}
	orig := filepath.Dir(specPath)
	root := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	s.Root.Path = root
	s.Hooks = nil // the daemon's hooks run in the daemon's measure, not the runtime's
	for i := range s.Mounts {
		m := &s.Mounts[i]
		file := false
		if m.Type == "bind" {
			fi, err := os.Stat(m.Source)
			if err != nil {
				return fmt.Errorf("mount %s: %w", m.Source, err)
			}
			file = !fi.IsDir()
			if strings.HasPrefix(m.Source, orig+"/") {
				m.Source = filepath.Join(dir, "sources", strconv.Itoa(i))
				if err := makeEmpty(m.Source, file); err != nil {
					return err
				}
			}
		}
		if !strings.HasPrefix(m.Destination, "/dev/") && !strings.HasPrefix(m.Destination, "/proc/") && !strings.HasPrefix(m.Destination, "/sys/") {
			if err := makeEmpty(filepath.Join(root, m.Destination), file); err != nil {
				return err
			}
		}
	}
	out, err := json.Marshal(&s)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), out, 0o600)
}

// makeEmpty makes an empty file or directory at p, and its parents.
func makeEmpty(p string, file bool) error {
	if !file {
		return os.MkdirAll(p, 0o755)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	return f.Close()
}
