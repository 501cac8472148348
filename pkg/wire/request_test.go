package wire

import (
	"errors"
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

// An error about one of the user's options says which, as an *OptionError;
// one about the request itself does not.
func TestParseContainerRequestErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kv     []string
		option string // "" for a request error
		msg    string
	}{
		{[]string{"mount", "/a:rel"}, "--container-mounts", `--container-mounts: destination "rel" is not an absolute path`},
		{[]string{"name", "n", "name_mode", "bogus"}, "--container-name", `--container-name: unknown mode "bogus"`},
		{[]string{"unshare", "pid"}, "--container-unshare", `--container-unshare: unknown namespace "pid" (want net, ipc, uts)`},
		{[]string{"workdir", "w"}, "--container-workdir", `--container-workdir: "w" is not an absolute path`},
		{[]string{"save", "s"}, "--container-save", `--container-save: "s" is not an absolute path`},
		{[]string{"script", "s"}, "", `request: batch script path "s" is not absolute`},
	} {
		m := New(Container, append([]string{"job", "1", "step", "0", "uid", "1", "gid", "1", "image", "x"}, tc.kv...)...)
		_, err := ParseContainerRequest(m)
		var oe *OptionError
		isOpt := errors.As(err, &oe)
		if err == nil || err.Error() != tc.msg || isOpt != (tc.option != "") || isOpt && oe.Option != tc.option {
			t.Errorf("%q: %v (option error %v), want %q about %q", tc.kv, err, isOpt, tc.msg, tc.option)
		}
	}
}
