package node

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// --container-mount-home binds $HOME (the job's), else the account's home,
// at its path, or at /root under --container-remap-root; HOME follows.
func TestHomeMount(t *testing.T) {
	t.Parallel()
	acct := account{Home: "/home/u"}
	for _, tc := range []struct {
		name     string
		req      wire.ContainerRequest
		src, dst string // "" dst: no mount
		err      string
	}{
		{"off", wire.ContainerRequest{Env: map[string]string{"HOME": "/scratch/u"}}, "", "", ""},
		{"job's HOME", wire.ContainerRequest{MountHome: true, Env: map[string]string{"HOME": "/scratch/u"}}, "/scratch/u", "/scratch/u", ""},
		{"account's", wire.ContainerRequest{MountHome: true, Env: map[string]string{}}, "/home/u", "/home/u", ""},
		{"remapped", wire.ContainerRequest{MountHome: true, RemapRoot: true, Env: map[string]string{"HOME": "/scratch/u"}}, "/scratch/u", "/root", ""},
		{"relative", wire.ContainerRequest{MountHome: true, Env: map[string]string{"HOME": "u"}}, "", "", "not an absolute path"},
		{"root", wire.ContainerRequest{MountHome: true, Env: map[string]string{"HOME": "/"}}, "", "", "podman-hpc's own"},
		{"reserved", wire.ContainerRequest{MountHome: true, Env: map[string]string{"HOME": "/.podman-hpc/x"}}, "", "", "podman-hpc's own"},
		{"root, remapped", wire.ContainerRequest{MountHome: true, RemapRoot: true, Env: map[string]string{"HOME": "/"}}, "/", "/root", ""},
	} {
		m, ok, err := homeMount(&tc.req, acct)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "--container-mount-home: ") {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case ok != (tc.dst != "") || m.src != tc.src || m.dst != tc.dst:
			t.Errorf("%s: %+v (%v), want %s at %s", tc.name, m, ok, tc.src, tc.dst)
		case ok && m.optionName() != "--container-mount-home":
			// A home the user cannot reach is named as the home, not as
			// one of their --container-mounts.
			t.Errorf("%s: errors would name %s", tc.name, m.optionName())
		}
		env := withHome([]string{"A=1", "HOME=/image"}, &tc.req, acct)
		want := []string{"A=1", "HOME=/image"}
		if ok && err == nil {
			want = []string{"A=1", "HOME=" + tc.dst}
		}
		if !slices.Equal(env, want) {
			t.Errorf("%s: env %q, want %q", tc.name, env, want)
		}
	}
}

// A failed import reads as pyxis's, naming the image once.
func TestImportErrorWording(t *testing.T) {
	t.Parallel()
	for cause, want := range map[string]string{
		`pull "r/x:1": manifest unknown: check the image name and tag`: "failed to import docker image: r/x:1: manifest unknown: check the image name and tag",
		`pull "docker.io/library/x:1": manifest unknown`:               `failed to import docker image: r/x:1: pull "docker.io/library/x:1": manifest unknown`,
		`squashfs: entry "dev/sda": a device node`:                     `failed to import docker image: r/x:1: squashfs: entry "dev/sda": a device node`,
	} {
		if got := (&ImportError{Image: "r/x:1", Err: errors.New(cause)}).Error(); got != want {
			t.Errorf("%q: %q, want %q", cause, got, want)
		}
	}
}
