package oci

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// DefaultRuntimes are tried in this order when the admin does not choose.
var DefaultRuntimes = []string{"crun", "runc"}

// Probe starts and removes one real container with rt; it says whether rt
// works on this node.
type Probe func(ctx context.Context, rt *Runtime) error

// Setup returns how to drive the runtime binary at path on this node.
type Setup func(path string) (*Runtime, error)

// Detect returns the first runtime of candidates that is installed and passes
// probe: runtimes fail on some nodes for reasons only a real start shows
// (a cgroup layout the runtime refuses, say). The error lists why each
// candidate was rejected.
func Detect(ctx context.Context, candidates []string, setup Setup, probe Probe) (*Runtime, error) {
	var why []string
	for _, c := range candidates {
		path, err := exec.LookPath(c)
		if err != nil {
			why = append(why, fmt.Sprintf("%s: not installed", c))
			continue
		}
		rt, err := setup(path)
		if err == nil {
			err = probe(ctx, rt)
		}
		if err != nil {
			why = append(why, fmt.Sprintf("%s: %v", c, err))
			continue
		}
		return rt, nil
	}
	return nil, fmt.Errorf("no working OCI runtime (%s); install runc or crun, or set runtime in podman-hpcd.conf", strings.Join(why, "; "))
}
