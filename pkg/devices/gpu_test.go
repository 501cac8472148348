package devices

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/devices/devicestest"
)

var fakeTree = devicestest.Tree

func TestGPUAllocation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    []int
		from    string
		wantErr string
	}{
		{name: "none", env: map[string]string{"SLURM_JOB_ID": "1"}},
		{name: "NoDevFiles", env: map[string]string{"SLURM_STEP_GPUS": "NoDevFiles"}},
		{name: "step wins over job", env: map[string]string{"SLURM_STEP_GPUS": "2", "SLURM_JOB_GPUS": "0,1,2,3", "CUDA_VISIBLE_DEVICES": "0"}, want: []int{2}, from: "SLURM_STEP_GPUS"},
		{name: "job", env: map[string]string{"SLURM_JOB_GPUS": "3,1"}, want: []int{1, 3}, from: "SLURM_JOB_GPUS"},
		{name: "range", env: map[string]string{"SLURM_JOB_GPUS": "0-2,2"}, want: []int{0, 1, 2}, from: "SLURM_JOB_GPUS"},
		{name: "cuda fallback", env: map[string]string{"CUDA_VISIBLE_DEVICES": "1"}, want: []int{1}, from: "CUDA_VISIBLE_DEVICES"},
		{name: "cuda uuids skipped", env: map[string]string{"CUDA_VISIBLE_DEVICES": "GPU-5e1c", "GPU_DEVICE_ORDINAL": "0"}, want: []int{0}, from: "GPU_DEVICE_ORDINAL"},
		{name: "amd", env: map[string]string{"ROCR_VISIBLE_DEVICES": "0,1"}, want: []int{0, 1}, from: "ROCR_VISIBLE_DEVICES"},
		{name: "garbage from slurm", env: map[string]string{"SLURM_STEP_GPUS": "x"}, wantErr: "SLURM_STEP_GPUS"},
		{name: "backwards range", env: map[string]string{"SLURM_JOB_GPUS": "3-1"}, wantErr: "range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, from, err := GPUAllocation(tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) || from != tc.from {
				t.Errorf("got %v from %q (%v), want %v from %q", got, from, err, tc.want, tc.from)
			}
		})
	}
}

func TestNvidiaDevices(t *testing.T) {
	t.Parallel()
	root := fakeTree(t, "/dev/nvidia0", "/dev/nvidia1", "/dev/nvidia2", "/dev/nvidiactl", "/dev/nvidia-uvm",
		"/dev/nvidia-uvm-tools", "/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2")
	got, err := NvidiaDevices(root, []int{0, 2})
	want := []string{"/dev/nvidia0", "/dev/nvidia2", "/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
		"/dev/nvidia-caps/nvidia-cap1", "/dev/nvidia-caps/nvidia-cap2"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
	if _, err := NvidiaDevices(root, []int{3}); !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "GPU 3 is allocated but /dev/nvidia3 is missing") {
		t.Errorf("unknown GPU: err = %v", err)
	}
	if _, err := NvidiaDevices(fakeTree(t, "/dev/nvidia0"), []int{0}); !errors.Is(err, ErrNoDriver) {
		t.Errorf("no nvidiactl: err = %v", err)
	}
	if !HasNvidia(root) || HasAMD(root) {
		t.Error("vendor detection")
	}
}

func TestAMDDevices(t *testing.T) {
	t.Parallel()
	root := fakeTree(t, "/dev/kfd", "/dev/dri/renderD128", "/dev/dri/renderD129", "/dev/dri/card0")
	got, err := AMDDevices(root, []int{1})
	if want := []string{"/dev/kfd", "/dev/dri/renderD129"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, %v; want %v", got, err, want)
	}
	if _, err := AMDDevices(root, []int{2}); !errors.Is(err, ErrNoDriver) {
		t.Errorf("missing render node: err = %v", err)
	}
}

func TestNvidiaDriver(t *testing.T) {
	t.Parallel()
	root := fakeTree(t, "/usr/bin/nvidia-smi", "/usr/sbin/nvidia-persistenced", "/usr/bin/other")
	cache := []LdEntry{
		{"libcuda.so.1", "/usr/lib64/libcuda.so.1"},
		{"libcuda.so", "/usr/lib64/libcuda.so"}, // the development link: not needed
		{"libnvidia-ml.so.1", "/usr/lib64/libnvidia-ml.so.1"},
		{"libnvidia-ml.so.1", "/usr/lib/libnvidia-ml.so.1"}, // a second one: the first wins
		{"libGLX_nvidia.so.0", "/usr/lib64/libGLX_nvidia.so.0"},
		{"libc.so.6", "/lib64/libc.so.6"},
	}
	libs, bins := NvidiaDriver(root, cache)
	if want := cache[:1:1]; !reflect.DeepEqual(libs, append(want, cache[2])) {
		t.Errorf("libs %v", libs)
	}
	if want := []string{"/usr/bin/nvidia-smi", "/usr/sbin/nvidia-persistenced"}; !reflect.DeepEqual(bins, want) {
		t.Errorf("bins %v, want %v", bins, want)
	}
}

func TestInfinibandDevices(t *testing.T) {
	t.Parallel()
	root := fakeTree(t, "/dev/infiniband/uverbs0", "/dev/infiniband/uverbs1", "/dev/infiniband/rdma_cm",
		"/dev/infiniband/umad0", "/dev/infiniband/issm0", "/dev/infiniband/other", "/etc/libibverbs.d/mlx5.driver")
	nodes, cfg := InfinibandDevices(root)
	want := []string{"/dev/infiniband/issm0", "/dev/infiniband/rdma_cm", "/dev/infiniband/umad0", "/dev/infiniband/uverbs0", "/dev/infiniband/uverbs1"}
	if !reflect.DeepEqual(nodes, want) || cfg != "/etc/libibverbs.d" {
		t.Errorf("got %v %q, want %v", nodes, cfg, want)
	}
	if nodes, cfg := InfinibandDevices(fakeTree(t, "/dev/null")); nodes != nil || cfg != "" {
		t.Errorf("no IB: %v %q", nodes, cfg)
	}
	// A root whose name holds glob characters is taken literally.
	odd := filepath.Join(t.TempDir(), "a[b]*")
	os.MkdirAll(filepath.Join(odd, "dev/infiniband"), 0o755)
	os.WriteFile(filepath.Join(odd, "dev/infiniband/uverbs0"), nil, 0o644)
	if nodes, _ := InfinibandDevices(odd); len(nodes) != 1 {
		t.Errorf("root with glob characters: %v", nodes)
	}
}
