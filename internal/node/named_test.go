package node

import (
	"context"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/internal/stepcgroup"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// tableManager is a manager with containers in its table only: enough for
// the decisions forStep makes before it creates anything.
func tableManager(cs ...*container) *manager {
	m := &manager{containers: map[string]*container{}}
	for _, c := range cs {
		m.containers[c.id] = c
	}
	return m
}

// pyxis's modes on containers that exist: JOBID.STEPID attaches to a
// running step's container of the same job and user only; NAME:exec only
// to a container a step runs in; --container-unshare only where the
// container has that namespace.
func TestForStepAttach(t *testing.T) {
	t.Parallel()
	mine := &wire.ContainerRequest{Job: "7", Step: "0", UID: 1000}
	netted := &wire.ContainerRequest{Job: "7", Step: "0", UID: 1000, Name: "n", Scope: "job", Unshare: []specs.LinuxNamespaceType{specs.NetworkNamespace}}
	global := &wire.ContainerRequest{Job: "3", Step: "0", UID: 1000, Name: "g", Scope: "global"}
	for _, tc := range []struct {
		name     string
		req      wire.ContainerRequest
		want     string // the container's id, or an error's words
		wantSole bool   // the step is then counted in it
	}{
		{"step of the job", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "7.0", NameMode: "auto"}, "phpc-7-0", true},
		{"step of the job, exec", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "7.0", NameMode: "exec"}, "phpc-7-0", true},
		{"another user", wire.ContainerRequest{Job: "7", Step: "1", UID: 0, Name: "7.0", NameMode: "auto"}, "belongs to another user", false},
		{"another job", wire.ContainerRequest{Job: "8", Step: "0", UID: 1000, Name: "7.0", NameMode: "auto"}, "names a step of job 7, not of this job (8)", false},
		{"no such step", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "7.5", NameMode: "auto"}, "no container of step 7.5 runs on this node", false},
		{"a step, create", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "7.0", NameMode: "create"}, "only attaching uses", false},
		{"a step, no_exec", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "7.0", NameMode: "no_exec"}, "only attaching uses", false},
		{"a step, unshare", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "7.0", NameMode: "auto", Unshare: []specs.LinuxNamespaceType{specs.IPCNamespace}},
			"--container-unshare=ipc: the container 7.0 is not in a separate ipc namespace", false},
		{"idle named, exec", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "n", NameMode: "exec", Scope: "job"}, "--container-name=n:exec: the container exists but is not running", false},
		{"idle named, auto", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "n", NameMode: "auto", Scope: "job"}, "phpc-7-n-n", true},
		{"named with its namespace", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "n", NameMode: "auto", Scope: "job", Unshare: []specs.LinuxNamespaceType{specs.NetworkNamespace}}, "phpc-7-n-n", true},
		{"named without one", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "n", NameMode: "auto", Scope: "job", Unshare: []specs.LinuxNamespaceType{specs.UTSNamespace}},
			"--container-unshare=uts: the container n is not in a separate uts namespace", false},
		{"parked global, exec", wire.ContainerRequest{Job: "4", Step: "0", UID: 1000, Name: "g", NameMode: "exec", Scope: "global"}, "the container exists but is not running", false},
		// Its creation under way (its image not there yet): not joined.
		{"a step still starting", wire.ContainerRequest{Job: "7", Step: "1", UID: 1000, Name: "7.1", NameMode: "auto"}, "--container-name=7.1:auto: the container of step 7.1 is still starting", false},
	} {
		step := &container{id: "phpc-7-0", req: mine, ready: true}
		starting := &container{id: "phpc-7-1", req: mine}
		named := &container{id: "phpc-7-n-n", req: netted, named: true}
		parked := &container{id: "phpc-u1000-n-g", req: global, named: true, parked: true}
		m := tableManager(step, starting, named, parked)
		req := tc.req
		c, owned, err := m.forStep(context.Background(), &req, stepcgroup.Target{}, func(string) {})
		switch {
		case err != nil:
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
			}
			if _, ok := err.(*wire.OptionError); !ok {
				t.Errorf("%s: %T is not about an option", tc.name, err)
			}
		case c.id != tc.want || owned:
			t.Errorf("%s: got %s (owned %v), want %s", tc.name, c.id, owned, tc.want)
		case tc.wantSole && c.steps != 1:
			t.Errorf("%s: %d steps counted in it", tc.name, c.steps)
		}
		if err == nil {
			m.detach(c)
			if c.steps != 0 {
				t.Errorf("%s: %d steps after its end", tc.name, c.steps)
			}
		}
	}
}

// A named container runs, for NAME:exec, while a step is attached to it.
func TestNamedExecWhileRunning(t *testing.T) {
	t.Parallel()
	named := &container{id: "phpc-7-n-n", req: &wire.ContainerRequest{Job: "7", UID: 1000, Name: "n", Scope: "job"}, named: true}
	m := tableManager(named)
	exec := func() error {
		_, _, err := m.forStep(context.Background(), &wire.ContainerRequest{Job: "7", Step: "2", UID: 1000, Name: "n", NameMode: "exec", Scope: "job"}, stepcgroup.Target{}, func(string) {})
		return err
	}
	if err := exec(); err == nil {
		t.Fatal("exec into an idle container worked")
	}
	m.attach(named) // a step runs in it
	if err := exec(); err != nil {
		t.Fatalf("exec while a step runs: %v", err)
	}
	m.detach(named)
	m.detach(named)
	if err := exec(); err == nil {
		t.Error("exec after the steps ended worked")
	}
}
