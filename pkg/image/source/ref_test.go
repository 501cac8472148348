package source

import (
	"errors"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

func TestParseReference(t *testing.T) {
	const dgst = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		in    string
		kind  Kind
		canon string // String(); "" when an error is wanted
		user  string
		err   string
	}{
		// pyxis / podman spellings
		{in: "ubuntu", canon: "ubuntu"},
		{in: "ubuntu:24.04", canon: "ubuntu:24.04"},
		{in: "library/ubuntu:24.04", canon: "library/ubuntu:24.04"},
		{in: "ubuntu@" + dgst, canon: "ubuntu@" + dgst},
		{in: "docker.io/ubuntu", canon: "docker://docker.io/library/ubuntu:latest"},
		{in: "nvcr.io/nvidia/pytorch:24.01-py3", canon: "docker://nvcr.io/nvidia/pytorch:24.01-py3"},
		{in: "localhost/app", canon: "docker://localhost/app:latest"},
		{in: "127.0.0.1:5000/x:1", canon: "docker://127.0.0.1:5000/x:1"},
		{in: "reg.example.org:5000/a/b/c@" + dgst, canon: "docker://reg.example.org:5000/a/b/c@" + dgst},
		{in: "reg.example.org/x:1@" + dgst, canon: "docker://reg.example.org/x@" + dgst},
		// enroot spellings
		{in: "nvcr.io#nvidia/pytorch:24.01", canon: "docker://nvcr.io/nvidia/pytorch:24.01"},
		{in: "alice@nvcr.io#nvidia/pytorch", canon: "docker://nvcr.io/nvidia/pytorch:latest", user: "alice"},
		{in: "docker://alice@nvcr.io#nvidia/pytorch:24.01", canon: "docker://nvcr.io/nvidia/pytorch:24.01", user: "alice"},
		{in: "127.0.0.1:5000#x:1", canon: "docker://127.0.0.1:5000/x:1"},
		{in: "docker.io#ubuntu", canon: "docker://docker.io/library/ubuntu:latest"},
		{in: "alice@ubuntu:22.04", canon: "ubuntu:22.04", user: "alice"},
		{in: "docker://ubuntu", canon: "docker://docker.io/library/ubuntu:latest"},
		{in: "docker://registry:5000/x", canon: "docker://registry:5000/x:latest"},
		// local images
		{in: "/images/app.sqsh", kind: KindFile, canon: "/images/app.sqsh"},
		{in: "/images//x/../app.sqsh", kind: KindFile, canon: "/images/app.sqsh"},
		{in: "./app.sqsh", kind: KindFile, canon: "./app.sqsh"},
		{in: "../app.sqsh", kind: KindFile, canon: "../app.sqsh"},
		{in: "oci:/work/layout:latest", kind: KindOCILayout, canon: "oci:/work/layout:latest"},
		{in: "oci:/work/layout", kind: KindOCILayout, canon: "oci:/work/layout"},
		{in: "oci:layout:v1", kind: KindOCILayout, canon: "oci:./layout:v1"},
		{in: "oci-archive:/a/img.tar", kind: KindOCIArchive, canon: "oci-archive:/a/img.tar"},
		{in: "docker-archive:/a/img.tar:app:1", kind: KindDockerArchive, canon: "docker-archive:/a/img.tar:app:1"},
		// enroot's local stores
		{in: "podman://app", kind: KindPodman, canon: "podman://app"},
		{in: "podman://localhost/app:1.0", kind: KindPodman, canon: "podman://localhost/app:1.0"},
		{in: "podman://reg.example.org:5000/a/b@" + dgst, kind: KindPodman, canon: "podman://reg.example.org:5000/a/b@" + dgst},
		{in: "podman://7eb6cdf5003d", kind: KindPodman, canon: "podman://7eb6cdf5003d"},
		{in: "podman://sha256:" + strings.Repeat("a", 64), kind: KindPodman, canon: "podman://sha256:" + strings.Repeat("a", 64)},
		{in: "dockerd://ubuntu:22.04", kind: KindDockerd, canon: "dockerd://ubuntu:22.04"},
		{in: "podman:5.0", canon: "podman:5.0"}, // the image named podman
		{in: "dockerd:1", canon: "dockerd:1"},   // and one named dockerd
		{in: "podman://", err: "needs an image name"},
		{in: "dockerd://", err: "needs an image name"},
		{in: "podman://-o/etc/shadow", err: "invalid reference format"},
		{in: "podman://--help", err: "invalid reference format"},
		{in: "dockerd://a?b", err: "invalid reference format"},
		{in: "dockerd://a/../b", err: "invalid reference format"},
		{in: "podman://App", err: "must be lowercase"},
		{in: "podman:///etc/passwd", err: "invalid reference format"},
		// errors
		{in: "", err: "empty"},
		{in: "Ubuntu", err: "must be lowercase"},
		{in: "a#b#c", err: "more than one '#'"},
		{in: "#ubuntu", err: "needs both parts"},
		{in: "myreg#ubuntu", err: `registry "myreg" before '#' must be a host name`},
		{in: "dir:/etc", err: `transport "dir" is not supported`},
		{in: "containers-storage:x", err: `transport "containers-storage" is not supported`},
		{in: "docker:26.1.0-dind-rootless", canon: "docker:26.1.0-dind-rootless"}, // the image "docker", as under enroot
		{in: "docker:/x", err: `transport "docker" is not supported`},
		{in: "oci:", err: "needs a path"},
		{in: "ubuntu:", err: "invalid reference format"},
		{in: "a b", err: "invalid reference format"},
		{in: "x\nY", err: "control character"},
		{in: "/" + strings.Repeat("x", maxRefLen), err: "longer than 4096 bytes"},
		{in: "ali/ce@ubuntu", err: "invalid reference format"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			r, err := Parse(tc.in)
			if tc.err != "" {
				if err == nil || !errors.Is(err, image.ErrBadReference) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("Parse(%q) = %v, %v; want image.ErrBadReference with %q", tc.in, r, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q): %v", tc.in, err)
			}
			if r.Kind != tc.kind || r.String() != tc.canon || r.User != tc.user {
				t.Errorf("Parse(%q) = kind %d %q user %q; want kind %d %q user %q", tc.in, r.Kind, r.String(), r.User, tc.kind, tc.canon, tc.user)
			}
			if short := !strings.Contains(tc.canon, "://") && tc.kind == KindRegistry; r.Short != short {
				t.Errorf("short = %v, want %v", r.Short, short)
			}
		})
	}
}
