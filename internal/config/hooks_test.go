package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/hooks"
)

func TestHooksConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p := filepath.Join(dir, "c.conf")
	os.WriteFile(p, []byte(`hooks_dirs = /etc/hooks.d, /opt/hooks.d
modules = gpu, mpi
gpu_cdi = no
mpi_libs = /opt/cray/lib/libmpi.so.12*
mpi_dependency_libs = /opt/cray/lib/libfabric.so.1
mpi_devices = /dev/cxi*,/dev/xpmem
mpi_env = FI_PROVIDER=cxi, MPICH_GPU_SUPPORT_ENABLED=0
mpi_abi_check = strict
pmi_dirs = /var/spool/slurmd/%n/pmix.%j.%s
`), 0o644)
	c, err := Load(p, true)
	if err != nil {
		t.Fatal(err)
	}
	want := Hooks{
		Dirs: []string{"/etc/hooks.d", "/opt/hooks.d"}, Modules: []string{"gpu", "mpi"},
		MPILibs: []string{"/opt/cray/lib/libmpi.so.12*"}, MPIDependencyLibs: []string{"/opt/cray/lib/libfabric.so.1"},
		MPIDevices: []string{"/dev/cxi*", "/dev/xpmem"}, MPIEnv: []string{"FI_PROVIDER=cxi", "MPICH_GPU_SUPPORT_ENABLED=0"},
		MPIABICheck: hooks.ABIStrict, PMIDirs: []string{"/var/spool/slurmd/%n/pmix.%j.%s"},
	}
	if !reflect.DeepEqual(c.Hooks, want) {
		t.Errorf("got %+v\nwant %+v", c.Hooks, want)
	}
	mods := c.Hooks.Enabled()
	if len(mods) != 2 || !reflect.DeepEqual(mods[0], hooks.GPU{NoCDI: true}) ||
		!reflect.DeepEqual(mods[1], hooks.MPI{Libs: want.MPILibs, DependencyLibs: want.MPIDependencyLibs, Devices: want.MPIDevices, Env: want.MPIEnv, Check: hooks.ABIStrict}) {
		t.Errorf("modules %+v", mods)
	}
	// The defaults: podman's directories, the modules that do nothing
	// where there is nothing for them.
	d := Default().Hooks
	if !reflect.DeepEqual(d.Dirs, []string{"/usr/share/containers/oci/hooks.d", "/etc/containers/oci/hooks.d"}) ||
		!reflect.DeepEqual(d.Modules, []string{"gpu", "ib", "pmi"}) || !d.GPUCDI || d.MPIABICheck != hooks.ABIMajor {
		t.Errorf("defaults %+v", d)
	}
	// An empty value empties the list.
	if err := c.set("modules", ""); err != nil || c.Hooks.Modules != nil || c.Hooks.Enabled() != nil {
		t.Errorf("modules = (empty): %v %v", c.Hooks.Modules, err)
	}
	c.set("modules", "pmi")
	if err := c.set("pmi_dirs", ""); err != nil || !reflect.DeepEqual(c.Hooks.Enabled(), []hooks.Module{hooks.PMI{Dirs: []string{}}}) {
		t.Errorf("pmi_dirs = (empty): %+v %v", c.Hooks.Enabled(), err)
	}
}

func TestHooksConfigErrors(t *testing.T) {
	t.Parallel()
	for kv, want := range map[string]string{
		"modules=gpu,bogus":    `modules: unknown module "bogus" (known: gpu, ib, mpi, pmi)`,
		"hooks_dirs=rel/dir":   `hooks_dirs: "rel/dir" is not an absolute path`,
		"mpi_libs=/a/[":        `mpi_libs: "/a/[": bad pattern`,
		"mpi_env=1X=2":         `mpi_env: "1X=2" is not NAME=VALUE`,
		"mpi_env=NOVALUE":      `is not NAME=VALUE`,
		"mpi_abi_check=loose":  `mpi_abi_check "loose": want major, full or strict`,
		"gpu_cdi=maybe":        `gpu_cdi "maybe": want yes or no`,
		"mpi_devices=dev/cxi0": "not an absolute path",
	} {
		var c Config
		k, v, _ := strings.Cut(kv, "=")
		if err := c.set(k, v); err == nil || err.Error() != want && !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want %q", kv, err, want)
		}
	}
}
