package hooks

import (
	"context"
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

// Every PMIx directory is a UserMount (opened as the job user by the
// daemon, which skips the missing ones), never a Mount opened by root.
func TestPMI(t *testing.T) {
	t.Parallel()
	root := "/host"
	req := Request{HostRoot: root, Job: "7", Step: "0", UID: 1000, Node: "node3", Env: map[string]string{"PMIX_SERVER_TMPDIR": "/srv/pmix/"}}
	res, err := PMI{}.Apply(context.Background(), req)
	want := []string{"/srv/pmix /srv/pmix rbind,nosuid,nodev", "/tmp/spmix_appdir_1000_7.0 /tmp/spmix_appdir_1000_7.0 rbind,nosuid,nodev",
		"/var/spool/slurmd/pmix.7.0 /var/spool/slurmd/pmix.7.0 rbind,nosuid,nodev"}
	if err != nil || len(res.Mounts) != 0 || !reflect.DeepEqual(mountPairs(root, Result{Mounts: res.UserMounts}), want) {
		t.Errorf("defaults: got %q %q, %v", mountPairs(root, res), mountPairs(root, Result{Mounts: res.UserMounts}), err)
	}
	res, _ = PMI{Dirs: []string{"/spool/%n/pmix.%j.%s", "/spool/%n/pmix.%j.%s/"}}.Apply(context.Background(), req)
	if got := mountPairs(root, Result{Mounts: res.UserMounts}); !reflect.DeepEqual(got, []string{"/spool/node3/pmix.7.0 /spool/node3/pmix.7.0 rbind,nosuid,nodev", want[0]}) {
		t.Errorf("pmi_dirs: got %q", got)
	}
	for _, v := range []string{"relative/dir", "/", "", "/../"} {
		if res, _ := (PMI{Dirs: []string{}}).Apply(context.Background(), Request{HostRoot: root, Env: map[string]string{"PMIX_SERVER_TMPDIR": v}}); len(res.Mounts)+len(res.UserMounts) != 0 {
			t.Errorf("%q bound: %+v", v, res)
		}
	}
}
