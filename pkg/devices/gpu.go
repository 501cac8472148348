package devices

import (
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
)

// ErrNoDriver is returned when GPUs are allocated but their driver's device
// nodes are missing.
var ErrNoDriver = errors.New("no GPU driver")

// gpuVars are the step's variables that name its GPUs, most precise first:
// Slurm's gres indices (the position of the device file in gres.conf, which
// is /dev/nvidiaN's N when gres.conf lists them in order), then the
// runtime's view (renumbered from 0 when Slurm constrains devices, so only a
// fallback, and only when numeric: UUIDs are not indices).
var gpuVars = []string{"SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "GPU_DEVICE_ORDINAL"}

// GPUAllocation returns the indices of the GPUs Slurm gave the step and the
// variable they came from. None set (or "NoDevFiles") means no GPU: nil, "".
// A SLURM_ variable that is not a list of indices is an error; the others
// are skipped when they are not numeric.
func GPUAllocation(env map[string]string) ([]int, string, error) {
	for _, name := range gpuVars {
		v, ok := env[name]
		if !ok || v == "" || v == "NoDevFiles" {
			continue
		}
		idx, err := parseIndices(v)
		if err != nil {
			if strings.HasPrefix(name, "SLURM_") {
				return nil, name, fmt.Errorf("%s=%q: %w", name, v, err)
			}
			continue
		}
		return idx, name, nil
	}
	return nil, "", nil
}

// parseIndices reads "0,2-3" as [0 2 3], sorted, without duplicates.
func parseIndices(s string) ([]int, error) {
	seen := map[int]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("%q is not a GPU index", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a || b-a > 1024 {
				return nil, fmt.Errorf("%q is not a range of GPU indices", part)
			}
		}
		for i := a; i <= b; i++ {
			seen[i] = true
		}
	}
	out := make([]int, 0, len(seen))
	for i := range seen {
		out = append(out, i)
	}
	sort.Ints(out)
	return out, nil
}

// HasNvidia and HasAMD report whether root has the vendor's driver loaded
// (its control device node).
func HasNvidia(root string) bool { return exists(root, "/dev/nvidiactl") }

// HasAMD reports whether root has AMD's compute driver (/dev/kfd).
func HasAMD(root string) bool { return exists(root, "/dev/kfd") }

// NvidiaDevices returns the device nodes the allocated GPUs idx need: each
// /dev/nvidiaN, and the driver's shared nodes that exist (nvidiactl,
// nvidia-uvm, nvidia-uvm-tools, nvidia-modeset, nvidia-caps/*). An allocated
// GPU without its node is an error.
func NvidiaDevices(root string, idx []int) ([]string, error) {
	if !HasNvidia(root) {
		return nil, fmt.Errorf("/dev/nvidiactl is missing: %w", ErrNoDriver)
	}
	var out []string
	for _, i := range idx {
		p := fmt.Sprintf("/dev/nvidia%d", i)
		if !exists(root, p) {
			return nil, fmt.Errorf("GPU %d is allocated but %s is missing: %w", i, p, ErrNoDriver)
		}
		out = append(out, p)
	}
	for _, p := range []string{"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"} {
		if exists(root, p) {
			out = append(out, p)
		}
	}
	return append(out, Glob(root, "/dev/nvidia-caps/nvidia-cap*")...), nil
}

// AMDDevices returns /dev/kfd and the render nodes of the allocated GPUs
// idx (/dev/dri/renderD128 is GPU 0).
func AMDDevices(root string, idx []int) ([]string, error) {
	if !HasAMD(root) {
		return nil, fmt.Errorf("/dev/kfd is missing: %w", ErrNoDriver)
	}
	out := []string{"/dev/kfd"}
	for _, i := range idx {
		p := fmt.Sprintf("/dev/dri/renderD%d", 128+i)
		if !exists(root, p) {
			return nil, fmt.Errorf("GPU %d is allocated but %s is missing: %w", i, p, ErrNoDriver)
		}
		out = append(out, p)
	}
	return out, nil
}

// nvidiaLibs are the driver's user-space libraries a compute, utility or
// video job loads (what NVIDIA's container toolkit mounts for those
// capabilities), by the name before ".so".
var nvidiaLibs = map[string]bool{
	"libcuda": true, "libcudadebugger": true, "libnvidia-ml": true, "libnvidia-cfg": true,
	"libnvidia-ptxjitcompiler": true, "libnvidia-fatbinaryloader": true, "libnvidia-nvvm": true,
	"libnvidia-gpucomp": true, "libnvidia-opencl": true, "libnvidia-compiler": true,
	"libnvidia-allocator": true, "libnvidia-pkcs11": true, "libnvidia-pkcs11-openssl3": true,
	"libnvcuvid": true, "libnvidia-encode": true, "libnvidia-opticalflow": true,
}

// nvidiaBins are the driver's tools, looked up in root's /usr/bin and /usr/sbin.
var nvidiaBins = []string{"nvidia-smi", "nvidia-debugdump", "nvidia-persistenced", "nvidia-cuda-mps-control", "nvidia-cuda-mps-server"}

// NvidiaDriver returns the driver's libraries, from root's linker cache
// (one per soname, the cache's first), and its tools found in root.
func NvidiaDriver(root string, cache []LdEntry) (libs []LdEntry, bins []string) {
	seen := map[string]bool{}
	for _, e := range cache {
		if nvidiaLibs[strings.TrimSuffix(LinkerName(e.Name), ".so")] && !seen[e.Name] && e.Name != LinkerName(e.Name) {
			seen[e.Name] = true
			libs = append(libs, e)
		}
	}
	for _, b := range nvidiaBins {
		for _, dir := range []string{"/usr/bin", "/usr/sbin"} {
			if p := path.Join(dir, b); exists(root, p) {
				bins = append(bins, p)
				break
			}
		}
	}
	return libs, bins
}

// InfinibandDevices returns the RDMA device nodes of root (verbs, the
// connection manager, management datagrams) and the verbs provider
// configuration directory when there is one.
func InfinibandDevices(root string) (nodes []string, config string) {
	nodes = Glob(root, "/dev/infiniband/uverbs*", "/dev/infiniband/rdma_cm", "/dev/infiniband/umad*", "/dev/infiniband/issm*")
	if exists(root, "/etc/libibverbs.d") {
		config = "/etc/libibverbs.d"
	}
	return nodes, config
}
