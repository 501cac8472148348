package hooks

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/pkg/devices/devicestest"
)

func devicePaths(r Result) []string {
	var out []string
	for _, d := range r.Devices {
		out = append(out, d.Path)
	}
	return out
}

func mountPairs(root string, r Result) []string {
	var out []string
	for _, m := range r.Mounts {
		out = append(out, strings.TrimPrefix(m.Source, root)+" "+m.Destination+" "+strings.Join(m.Options, ","))
	}
	return out
}

// nvidiaNode is a fake node with two NVIDIA GPUs and a driver.
func nvidiaNode(t *testing.T) string {
	root := devicestest.Tree(t, "/usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.550.54.15",
		"/usr/bin/nvidia-smi", "/usr/lib/x86_64-linux-gnu/libc.so.6")
	for p, mm := range map[string][2]uint32{"/dev/nvidia0": {195, 0}, "/dev/nvidia1": {195, 1}, "/dev/nvidiactl": {195, 255}, "/dev/nvidia-uvm": {508, 0}} {
		devicestest.Mknod(t, root, p, mm[0], mm[1])
	}
	lib := filepath.Join(root, "usr/lib/x86_64-linux-gnu")
	os.Symlink("libcuda.so.550.54.15", filepath.Join(lib, "libcuda.so.1"))
	os.Symlink("libnvidia-ml.so.550.54.15", filepath.Join(lib, "libnvidia-ml.so.1"))
	devicestest.WriteLdCache(t, root, "libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
		"libnvidia-ml.so.1", "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1", "libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6")
	return root
}

func TestGPUNoAllocation(t *testing.T) {
	t.Parallel()
	res, err := GPU{}.Apply(context.Background(), Request{HostRoot: t.TempDir(), Env: map[string]string{}})
	if err != nil || len(res.Devices)+len(res.Mounts)+len(res.Env) != 0 {
		t.Errorf("no GPU allocated: %+v, %v", res, err)
	}
}

func TestGPUNvidia(t *testing.T) {
	t.Parallel()
	root := nvidiaNode(t)
	res, err := GPU{}.Apply(context.Background(), Request{HostRoot: root, Env: map[string]string{"SLURM_STEP_GPUS": "1", "CUDA_VISIBLE_DEVICES": "0"}})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/dev/nvidia1", "/dev/nvidiactl", "/dev/nvidia-uvm"}; !reflect.DeepEqual(devicePaths(res), want) {
		t.Errorf("devices %v, want %v", devicePaths(res), want)
	}
	if len(res.DeviceRules) != 3 || *res.DeviceRules[0].Major != 195 || *res.DeviceRules[0].Minor != 1 || !res.DeviceRules[0].Allow {
		t.Errorf("rules %+v", res.DeviceRules)
	}
	want := []string{
		"/usr/lib/x86_64-linux-gnu/libcuda.so.1 /.podman-hpc/gpu/lib/libcuda.so.1 rbind,ro,nosuid,nodev",
		"/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1 /.podman-hpc/gpu/lib/libnvidia-ml.so.1 rbind,ro,nosuid,nodev",
		"/usr/bin/nvidia-smi /usr/bin/nvidia-smi rbind,ro,nosuid,nodev",
	}
	if got := mountPairs(root, res); !reflect.DeepEqual(got, want) {
		t.Errorf("mounts %q\nwant %q", got, want)
	}
	if !reflect.DeepEqual(res.Env, []string{"LD_LIBRARY_PATH=/.podman-hpc/gpu/lib"}) {
		t.Errorf("env %q", res.Env)
	}
	if !strings.Contains(res.Summary, "NVIDIA GPUs 1 (SLURM_STEP_GPUS)") {
		t.Errorf("summary %q", res.Summary)
	}
}

func TestGPUErrors(t *testing.T) {
	t.Parallel()
	root := nvidiaNode(t)
	noLibs := nvidiaNode(t)
	devicestest.WriteLdCache(t, noLibs, "libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6")
	for _, tc := range []struct {
		name, root, gpus, want string
	}{
		{"GPU without its node", root, "5", "gpu: GPU 5 is allocated but /dev/nvidia5 is missing"},
		{"no driver", devicestest.Tree(t, "/dev/null"), "0", "gpu: Slurm allocated GPUs 0 (SLURM_STEP_GPUS) but this node has no NVIDIA (/dev/nvidiactl) or AMD (/dev/kfd) driver loaded"},
		{"no driver libraries", noLibs, "0", "gpu: no NVIDIA driver library"},
		{"bad allocation", root, "zero", `gpu: SLURM_STEP_GPUS="zero"`},
	} {
		_, err := GPU{}.Apply(context.Background(), Request{HostRoot: tc.root, Env: map[string]string{"SLURM_STEP_GPUS": tc.gpus}})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestGPUAMD(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	devicestest.Mknod(t, root, "/dev/kfd", 235, 0)
	devicestest.Mknod(t, root, "/dev/dri/renderD128", 226, 128)
	devicestest.Mknod(t, root, "/dev/dri/renderD129", 226, 129)
	res, err := GPU{}.Apply(context.Background(), Request{HostRoot: root, Env: map[string]string{"SLURM_JOB_GPUS": "1"}})
	if err != nil || !reflect.DeepEqual(devicePaths(res), []string{"/dev/kfd", "/dev/dri/renderD129"}) || len(res.Mounts) != 0 {
		t.Errorf("got %v %+v, %v", devicePaths(res), res.Mounts, err)
	}
}

const cdiSpec = `cdiVersion: "0.6.0"
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - {path: /dev/nvidia0, type: c, major: 195, minor: 0}
- name: "1"
  containerEdits:
    deviceNodes:
    - {path: /dev/nvidia1, type: c, major: 195, minor: 1}
containerEdits:
  env: [NVIDIA_VISIBLE_DEVICES=void]
  deviceNodes:
  - {path: /dev/nvidiactl, type: c, major: 195, minor: 255}
  mounts:
  - {hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15, containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.550.54.15, options: [ro, nosuid, nodev, bind]}
  hooks:
  - {hookName: createContainer, path: /usr/bin/nvidia-cdi-hook, args: [nvidia-cdi-hook, update-ldcache, --folder, /usr/lib/x86_64-linux-gnu]}
`

// A node with a CDI spec for its GPUs gets what the spec says, for the
// allocated GPUs only.
func TestGPUCDI(t *testing.T) {
	t.Parallel()
	root := devicestest.Tree(t, "/dev/nvidiactl", "/dev/nvidia0", "/dev/nvidia1")
	os.MkdirAll(filepath.Join(root, "etc/cdi"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/cdi/nvidia.yaml"), []byte(cdiSpec), 0o644)
	res, err := GPU{}.Apply(context.Background(), Request{HostRoot: root, Env: map[string]string{"SLURM_JOB_GPUS": "1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got := devicePaths(res); !reflect.DeepEqual(got, []string{"/dev/nvidiactl", "/dev/nvidia1"}) {
		t.Errorf("devices %v", got)
	}
	if len(res.DeviceRules) != 2 || !reflect.DeepEqual(res.Env, []string{"NVIDIA_VISIBLE_DEVICES=void"}) || len(res.Mounts) != 1 {
		t.Errorf("rules %d env %q mounts %+v", len(res.DeviceRules), res.Env, res.Mounts)
	}
	want := &specs.Hooks{CreateContainer: []specs.Hook{{Path: "/usr/bin/nvidia-cdi-hook", Args: []string{"nvidia-cdi-hook", "update-ldcache", "--folder", "/usr/lib/x86_64-linux-gnu"}}}}
	if !reflect.DeepEqual(res.Hooks, want) {
		t.Errorf("hooks %+v", res.Hooks)
	}
	if _, err := (GPU{}).Apply(context.Background(), Request{HostRoot: root, Env: map[string]string{"SLURM_JOB_GPUS": "2"}}); err == nil ||
		!strings.Contains(err.Error(), "gpu: the node's CDI spec has no nvidia.com/gpu=2 for allocated GPU 2") {
		t.Errorf("GPU missing from the CDI spec: err = %v", err)
	}
	// With CDI off, discovery runs: here it finds no real device node.
	if _, err := (GPU{NoCDI: true}).Apply(context.Background(), Request{HostRoot: root, Env: map[string]string{"SLURM_JOB_GPUS": "1"}}); err == nil ||
		!strings.Contains(err.Error(), "not a device node") {
		t.Errorf("NoCDI: err = %v", err)
	}
}
