package wire

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseContainerRequestHooks(t *testing.T) {
	t.Parallel()
	m := New(Container, "job", "1", "step", "0", "uid", "0", "gid", "0", "image", "x",
		"hooks", "mpi,no-gpu", "command", "/usr/bin/hostname", "jobenv", "SLURM_STEP_GPUS=0,1", "jobenv", "PMIX_SERVER_TMPDIR=/a=b", "jobenv", "junk")
	r, err := ParseContainerRequest(m)
	if err != nil {
		t.Fatal(err)
	}
	if r.Hooks != "mpi,no-gpu" || r.Command != "/usr/bin/hostname" ||
		!reflect.DeepEqual(r.Env, map[string]string{"SLURM_STEP_GPUS": "0,1", "PMIX_SERVER_TMPDIR": "/a=b"}) {
		t.Errorf("got %+v", r)
	}
}

// The request's own paths: / and /.podman-hpc are the daemon's.
func TestParseUserMountReserved(t *testing.T) {
	for _, s := range []string{"/x:/", "/x:/.podman-hpc", "/x:/.podman-hpc/init", "/x:/.podman-hpc//init:ro", "/x:/a/../.podman-hpc/init", "/x:/./"} {
		if _, err := ParseUserMount(s); err == nil || !strings.Contains(err.Error(), "podman-hpc's own") {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := ParseUserMount("/x:/.podman-hpc-data"); err != nil {
		t.Errorf("a sibling of the reserved directory: %v", err)
	}
}
