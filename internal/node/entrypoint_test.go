package node

import (
	"fmt"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// The entrypoint's output goes to the plugin as a C string: a NUL (a
// binary written to stdout) would make the whole answer unsendable.
func TestEntrypointLogWithoutNULs(t *testing.T) {
	if got := withoutNULs("sh\x00ort\n"); got != "short\n" {
		t.Errorf("got %q", got)
	}
}

// An environment larger than the plugin's answer can carry fails the step
// with its size, the limit and what left it, not with a write refused
// after the container is made.
func TestEnvFits(t *testing.T) {
	t.Parallel()
	big := make([]string, 100000)
	for i := range big {
		big[i] = fmt.Sprintf("V%d=x", i)
	}
	// The size as the wire would carry it, were the frame allowed.
	size := len("env\x00\x00")*len(big) + len(strings.Join(big, ""))
	for _, tc := range []struct {
		name string
		c    *container
		want string // "" fits
	}{
		{"small", &container{req: &wire.ContainerRequest{Entrypoint: true}, img: &image{}, env: []string{"A=1", "PATH=/bin"}}, ""},
		{"entrypoint", &container{req: &wire.ContainerRequest{Entrypoint: true}, img: &image{}, env: big},
			fmt.Sprintf("the environment the image's entrypoint left is %d bytes (100000 variables), more than the %d the plugin takes; export fewer or shorter variables (try --no-container-entrypoint)", size, wire.MaxBody-64<<10)},
		{"SIF", &container{req: &wire.ContainerRequest{}, img: &image{Apptainer: true}, env: big},
			fmt.Sprintf("the environment the SIF's environment scripts (/.singularity.d/env/*.sh) left is %d bytes", size)},
		{"image", &container{req: &wire.ContainerRequest{}, img: &image{}, env: big},
			fmt.Sprintf("the environment the image's config and hooks set is %d bytes", size)},
	} {
		err := tc.c.envFits()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q...", tc.name, err, tc.want)
		}
	}
	// Right at the limit: the reply it goes in still fits the wire.
	env := []string{"A=" + strings.Repeat("x", wire.MaxEnv-len("env")-2-len("A="))}
	c := &container{req: &wire.ContainerRequest{}, img: &image{}, env: env}
	if err := c.envFits(); err != nil {
		t.Fatalf("at the limit: %v", err)
	}
	reply := wire.New(wire.OK, "container", strings.Repeat("c", 64), "workdir", strings.Repeat("w", 4096), "entrypoint_log", strings.Repeat("l", 16<<10))
	for _, e := range env {
		reply.Add("env", e)
	}
	if _, err := reply.Marshal(); err != nil {
		t.Errorf("a reply with the largest environment: %v", err)
	}
	c.env = append(c.env, "B=1")
	if err := c.envFits(); err == nil {
		t.Errorf("over the limit by %d bytes: fits", len("env")+2+3)
	}
}
