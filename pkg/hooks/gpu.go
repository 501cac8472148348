package hooks

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/podman-hpc/podman-hpc/pkg/devices"
)

// GPULibDir is where the gpu module binds the NVIDIA driver's libraries in
// the container, named by soname; the tasks' LD_LIBRARY_PATH starts with it.
const GPULibDir = "/.podman-hpc/gpu/lib"

// GPU gives the step the GPUs Slurm allocated to it, and nothing when it
// has none. NVIDIA: through the node's CDI spec for nvidia.com/gpu when there
// is one, else the device nodes plus the driver's libraries (from the node's
// linker cache) and tools. AMD: /dev/kfd and the GPUs' render nodes (ROCm's
// user-space is the image's).
type GPU struct {
	// CDIDirs are where CDI specs are read; nil means CDI's defaults
	// (/etc/cdi, /var/run/cdi), under the request's HostRoot.
	CDIDirs []string
	// NoCDI ignores CDI specs.
	NoCDI bool
}

// Name implements Module.
func (GPU) Name() string { return "gpu" }

// Apply implements Module.
func (g GPU) Apply(ctx context.Context, r Request) (Result, error) {
	idx, from, err := devices.GPUAllocation(r.Env)
	if err != nil {
		return Result{}, fmt.Errorf("gpu: %w", err)
	}
	if len(idx) == 0 {
		return Result{Summary: "no GPU allocated"}, nil
	}
	list := make([]string, len(idx))
	for i, n := range idx {
		list[i] = strconv.Itoa(n)
	}
	what := fmt.Sprintf("GPUs %s (%s)", strings.Join(list, ","), from)
	switch {
	case devices.HasNvidia(r.HostRoot):
		if !g.NoCDI {
			res, ok, err := g.cdi(r, idx)
			if err != nil {
				return Result{}, fmt.Errorf("gpu: %w", err)
			}
			if ok {
				res.Summary = "NVIDIA " + what + " from CDI: " + res.Summary
				return res, nil
			}
		}
		res, err := nvidia(r, idx)
		if err != nil {
			return Result{}, fmt.Errorf("gpu: %w", err)
		}
		res.Summary = "NVIDIA " + what + ": " + res.Summary
		return res, nil
	case devices.HasAMD(r.HostRoot):
		nodes, err := devices.AMDDevices(r.HostRoot, idx)
		var res Result
		if err == nil {
			err = deviceResult(&res, r.HostRoot, nodes)
		}
		if err != nil {
			return Result{}, fmt.Errorf("gpu: %w", err)
		}
		res.Summary = fmt.Sprintf("AMD %s: %d device nodes", what, len(res.Devices))
		return res, nil
	}
	return Result{}, fmt.Errorf("gpu: Slurm allocated %s but this node has no NVIDIA (/dev/nvidiactl) or AMD (/dev/kfd) driver loaded; ask your admin", what)
}

func nvidia(r Request, idx []int) (Result, error) {
	var res Result
	nodes, err := devices.NvidiaDevices(r.HostRoot, idx)
	if err != nil {
		return res, err
	}
	if err := deviceResult(&res, r.HostRoot, nodes); err != nil {
		return res, err
	}
	cache, err := devices.ReadLdCache(r.HostRoot)
	if err != nil {
		return res, fmt.Errorf("the node's linker cache: %w; the admin runs ldconfig", err)
	}
	libs, bins := devices.NvidiaDriver(r.HostRoot, cache)
	if len(libs) == 0 {
		return res, errors.New("no NVIDIA driver library (libcuda.so.1, libnvidia-ml.so.1...) in the node's linker cache; ask your admin")
	}
	for _, l := range libs {
		res.Mounts = append(res.Mounts, bindRO(r.HostRoot, l.Path, path.Join(GPULibDir, l.Name)))
	}
	for _, b := range bins {
		res.Mounts = append(res.Mounts, bindRO(r.HostRoot, b, b))
	}
	res.Env = []string{"LD_LIBRARY_PATH=" + GPULibDir}
	res.Summary = fmt.Sprintf("%d device nodes, %d libraries, %d tools", len(res.Devices), len(libs), len(bins))
	return res, nil
}

// cdi applies the node's CDI devices nvidia.com/gpu=N for the allocated
// GPUs. ok is false when the node has no CDI spec for nvidia.com/gpu.
func (g GPU) cdi(r Request, idx []int) (res Result, ok bool, err error) {
	dirs := g.CDIDirs
	if dirs == nil {
		for _, d := range cdi.DefaultSpecDirs {
			dirs = append(dirs, filepath.Join(r.HostRoot, d))
		}
	}
	cache, _ := cdi.NewCache(cdi.WithSpecDirs(dirs...), cdi.WithAutoRefresh(false))
	has := false
	for _, d := range cache.ListDevices() {
		has = has || strings.HasPrefix(d, "nvidia.com/gpu=")
	}
	if !has {
		return res, false, nil
	}
	names := make([]string, len(idx))
	for i, n := range idx {
		names[i] = "nvidia.com/gpu=" + strconv.Itoa(n)
		if cache.GetDevice(names[i]) == nil {
			return res, true, fmt.Errorf("the node's CDI spec has no %s for allocated GPU %d; the admin regenerates it (nvidia-ctk cdi generate)", names[i], n)
		}
	}
	scratch := &specs.Spec{Process: &specs.Process{}, Linux: &specs.Linux{}}
	if _, err := cache.InjectDevices(scratch, names...); err != nil {
		return res, true, fmt.Errorf("CDI %s: %w", strings.Join(names, ","), err)
	}
	res = Result{Mounts: scratch.Mounts, Devices: scratch.Linux.Devices, Env: scratch.Process.Env, Hooks: scratch.Hooks}
	if scratch.Linux.Resources != nil {
		res.DeviceRules = scratch.Linux.Resources.Devices
	}
	res.Summary = fmt.Sprintf("%d device nodes, %d mounts, %d variables", len(res.Devices), len(res.Mounts), len(res.Env))
	return res, true, nil
}
