package hooks

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/devices/devicestest"
)

const libDir = "/usr/lib/x86_64-linux-gnu"

// mpiImage is an image with MPICH (libmpich.so.12.2.2, and libmpi.so.12
// as Cray names it, version given) and Open MPI's libmpi.so.40 in its cache.
func mpiImage(t *testing.T, mpiVersion string) string {
	root := t.TempDir()
	devicestest.Lib(t, root, libDir, "libmpich.so.12.2.2", "libmpich.so.12")
	devicestest.Lib(t, root, libDir, "libmpi.so."+mpiVersion, "libmpi.so.12")
	devicestest.Lib(t, root, libDir, "libmpi.so.40.30.4", "libmpi.so.40")
	// Debian's cache lists /lib paths, an absolute symlink to /usr/lib
	// (usrmerge), resolved inside the image.
	os.Symlink("/usr/lib", filepath.Join(root, "lib"))
	devicestest.WriteLdCache(t, root, "libmpich.so.12", "/lib/x86_64-linux-gnu/libmpich.so.12",
		"libmpi.so.40", "/lib/x86_64-linux-gnu/libmpi.so.40", "libmpi.so.12", "/lib/x86_64-linux-gnu/libmpi.so.12",
		"libmpi.so.12", "/usr/lib/x86_64-linux-gnu/libmpi.so.12")
	return root
}

func TestMPISwap(t *testing.T) {
	t.Parallel()
	host := t.TempDir()
	devicestest.Lib(t, host, "/opt/cray/lib", "libmpi.so.12.1.1", "libmpi.so.12")
	devicestest.Lib(t, host, "/opt/cray/lib", "libfabric.so.1.18.0", "libfabric.so.1")
	devicestest.Mknod(t, host, "/dev/cxi0", 240, 0)
	image := mpiImage(t, "12.0.5")
	m := MPI{Libs: []string{"/opt/cray/lib/libmpi.so.12*"}, DependencyLibs: []string{"/opt/cray/lib/libfabric.so.1"},
		Devices: []string{"/dev/cxi*", "/dev/xpmem"}, Env: []string{"FI_PROVIDER=cxi"}, Check: ABIFull}
	res, err := m.Apply(context.Background(), Request{HostRoot: host, ImageRoot: image})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"/opt/cray/lib/libmpi.so.12.1.1 " + libDir + "/libmpi.so.12.0.5 rbind,ro,nosuid,nodev",
		"/opt/cray/lib/libfabric.so.1 /.podman-hpc/mpi/lib/libfabric.so.1 rbind,ro,nosuid,nodev",
	}
	if got := mountPairs(host, res); !reflect.DeepEqual(got, want) {
		t.Errorf("mounts %q\nwant %q", got, want)
	}
	if !reflect.DeepEqual(res.Env, []string{"LD_LIBRARY_PATH=/.podman-hpc/mpi/lib", "FI_PROVIDER=cxi"}) || !reflect.DeepEqual(devicePaths(res), []string{"/dev/cxi0"}) {
		t.Errorf("env %q devices %v", res.Env, devicePaths(res))
	}
	if len(res.Notes) != 0 || !strings.Contains(res.Summary, "libmpi.so.12.1.1 over "+libDir+"/libmpi.so.12.0.5") {
		t.Errorf("notes %q summary %q", res.Notes, res.Summary)
	}
}

func TestMPIABICheck(t *testing.T) {
	t.Parallel()
	host := t.TempDir()
	devicestest.Lib(t, host, "/opt/mpi", "libmpi.so.12.1.1", "libmpi.so.12")
	devicestest.Lib(t, host, "/opt/fake", "libmpich.so.13.0.0", "libmpich.so.13")
	for _, tc := range []struct {
		name, lib, image string
		check            ABICheck
		err, note        string
	}{
		{"major: an older host minor works, with a note", "/opt/mpi/libmpi.so.12", "12.2.0", ABIMajor, "", "the host's minor version is older"},
		{"full: an older host minor is refused", "/opt/mpi/libmpi.so.12", "12.2.0", ABIFull,
			"mpi: the host's libmpi.so.12.1.1 is not ABI-compatible with the image's libmpi.so.12.2.0 (mpi_abi_check = full: the host's minor version is older than the image's)", ""},
		{"full: a newer host minor works", "/opt/mpi/libmpi.so.12", "12.0.9", ABIFull, "", ""},
		{"strict: any difference is refused", "/opt/mpi/libmpi.so.12", "12.1.0", ABIStrict, "(mpi_abi_check = strict: the versions differ)", ""},
		{"strict: the same version works", "/opt/mpi/libmpi.so.12", "12.1.1", ABIStrict, "", ""},
		{"another major is refused in every mode", "/opt/fake/libmpich.so.13.0.0", "12.1.1", ABIMajor,
			"mpi: the host's libmpich.so.13.0.0 is not ABI-compatible with the image's libmpich.so.12.2.2 (mpi_abi_check = major: the major versions differ); use an image built with a compatible MPI, or run without --container-hooks=mpi", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := MPI{Libs: []string{tc.lib}, Check: tc.check}.Apply(context.Background(), Request{HostRoot: host, ImageRoot: mpiImage(t, tc.image)})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || len(res.Mounts) != 1 {
				t.Fatalf("got %+v, %v", res, err)
			}
			if (tc.note == "") != (len(res.Notes) == 0) || (tc.note != "" && !strings.Contains(res.Notes[0], tc.note)) {
				t.Errorf("notes %q, want %q", res.Notes, tc.note)
			}
		})
	}
}

func TestMPIErrors(t *testing.T) {
	t.Parallel()
	host := t.TempDir()
	devicestest.Lib(t, host, "/opt/mpi", "libmpi.so.12.1.1", "libmpi.so.12")
	devicestest.Lib(t, host, "/opt/other", "libmpi.so.12.3.0", "libmpi.so.12")
	noMPI := devicestest.Tree(t, "/etc/os-release")
	devicestest.WriteLdCache(t, noMPI, "libc.so.6", "/lib/libc.so.6")
	for _, tc := range []struct {
		name  string
		m     MPI
		image string
		want  string
	}{
		{"not configured", MPI{}, noMPI, "mpi: not configured on this node (mpi_libs is empty)"},
		{"missing host library", MPI{Libs: []string{"/opt/none/libmpi.so.12"}}, noMPI, "mpi: mpi_libs: /opt/none/libmpi.so.12: no such file on this node"},
		{"two of one name", MPI{Libs: []string{"/opt/mpi/libmpi.so.12", "/opt/other/libmpi.so.12"}}, noMPI, "mpi: mpi_libs: two libmpi.so libraries"},
		{"image without MPI", MPI{Libs: []string{"/opt/mpi/libmpi.so.12"}}, noMPI, "mpi: the image has no libmpi.so.12 to replace"},
		{"missing dependency", MPI{Libs: []string{"/opt/mpi/libmpi.so.12"}, DependencyLibs: []string{"/opt/none/libfabric.so.1"}}, "", "mpi: mpi_dependency_libs: /opt/none/libfabric.so.1: no such file"},
	} {
		image := tc.image
		if image == "" {
			image = mpiImage(t, "12.0.0")
		}
		if _, err := tc.m.Apply(context.Background(), Request{HostRoot: host, ImageRoot: image}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// An image without ld.so.cache (musl) is searched in the standard directories.
func TestMPIImageWithoutLdCache(t *testing.T) {
	t.Parallel()
	host := t.TempDir()
	devicestest.Lib(t, host, "/opt/mpi", "libmpi.so.12.1.1", "libmpi.so.12")
	image := t.TempDir()
	devicestest.Lib(t, image, "/usr/lib", "libmpi.so.12.1.0", "libmpi.so.12")
	res, err := MPI{Libs: []string{"/opt/mpi/libmpi.so.12"}}.Apply(context.Background(), Request{HostRoot: host, ImageRoot: image})
	if err != nil || len(res.Mounts) != 1 || res.Mounts[0].Destination != "/usr/lib/libmpi.so.12.1.0" {
		t.Errorf("got %+v, %v", res.Mounts, err)
	}
}

func TestParseABICheck(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"major", "full", "strict"} {
		if c, err := ParseABICheck(s); err != nil || string(c) != s {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := ParseABICheck("loose"); err == nil {
		t.Error("loose accepted")
	}
}
