package hooks

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/devices/devicestest"
)

func TestIB(t *testing.T) {
	t.Parallel()
	root := devicestest.Tree(t, "/etc/libibverbs.d/mlx5.driver")
	devicestest.Mknod(t, root, "/dev/infiniband/uverbs0", 231, 192)
	devicestest.Mknod(t, root, "/dev/infiniband/rdma_cm", 10, 58)
	devicestest.Mknod(t, root, "/dev/infiniband/umad0", 231, 0)
	res, err := IB{}.Apply(context.Background(), Request{HostRoot: root})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/dev/infiniband/rdma_cm", "/dev/infiniband/umad0", "/dev/infiniband/uverbs0"}; !reflect.DeepEqual(devicePaths(res), want) {
		t.Errorf("devices %v", devicePaths(res))
	}
	if got := mountPairs(root, res); !reflect.DeepEqual(got, []string{"/etc/libibverbs.d /etc/libibverbs.d rbind,ro,nosuid,nodev"}) {
		t.Errorf("mounts %q", got)
	}
	// A node without InfiniBand: nothing, not even the verbs config.
	res, err = IB{}.Apply(context.Background(), Request{HostRoot: devicestest.Tree(t, "/etc/libibverbs.d/mlx5.driver")})
	if err != nil || len(res.Devices)+len(res.Mounts) != 0 {
		t.Errorf("no InfiniBand: %+v, %v", res, err)
	}
}

func TestPMI(t *testing.T) {
	t.Parallel()
	root := devicestest.Tree(t, "/var/spool/slurmd/pmix.7.0/", "/tmp/file")
	os.MkdirAll(filepath.Join(root, "tmp/spmix"), 0o755)
	res, err := PMI{}.Apply(context.Background(), Request{HostRoot: root, Env: map[string]string{
		"PMIX_SERVER_TMPDIR": "/var/spool/slurmd/pmix.7.0/", "PMIX_SYSTEM_TMPDIR": "/var/spool/slurmd/pmix.7.0"}})
	if err != nil || !reflect.DeepEqual(mountPairs(root, res), []string{"/var/spool/slurmd/pmix.7.0 /var/spool/slurmd/pmix.7.0 rbind,nosuid,nodev"}) {
		t.Errorf("got %q, %v", mountPairs(root, res), err)
	}
	for _, v := range []string{"relative/dir", "/", "/missing", "/tmp/file"} {
		if res, _ := (PMI{}).Apply(context.Background(), Request{HostRoot: root, Env: map[string]string{"PMIX_SERVER_TMPDIR": v}}); len(res.Mounts) != 0 {
			t.Errorf("%q bound: %+v", v, res.Mounts)
		}
	}
}
