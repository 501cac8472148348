package hooks

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/pkg/devices"
)

// Module is a built-in hook: it looks at the node and the step, and says
// what the container needs added.
type Module interface {
	// Name is what --container-hooks and the config's modules call it.
	Name() string
	// Apply returns what to add. An error stops the container: it is
	// shown to the user in srun's output, so it names the cause and the fix.
	Apply(ctx context.Context, r Request) (Result, error)
}

// OptIn is implemented by modules that apply only to the jobs that name
// them in --container-hooks; the others apply to every job unless it says
// no-NAME (they do nothing where there is nothing for them).
type OptIn interface {
	OptIn() bool
}

// Request is what a module may look at.
type Request struct {
	Job, Step string            // Slurm's ids
	UID       uint32            // the job user's
	Node      string            // the node's name
	HostRoot  string            // the node's root: "/" (a fake tree in tests)
	ImageRoot string            // the image's root filesystem, read-only
	Env       map[string]string // the step's variables the plugin sent (GPU allocation, PMI)
	Writable  bool              // the container's root is writable
}

// Result is what a module adds to the container. Mount sources are paths
// on the node (under HostRoot); destinations, device paths and variables
// are the container's.
type Result struct {
	Mounts []specs.Mount
	// UserMounts are binds whose sources the job can name or reach (from
	// its environment, or in a directory the user can write, such as
	// /tmp): the daemon opens each source as the job user, with the user's
	// permissions on every directory along the path, and binds what it
	// opened, as it does --container-mounts. A source that does not exist
	// is skipped; one the user may not reach fails the step.
	UserMounts  []specs.Mount
	Devices     []specs.LinuxDevice
	DeviceRules []specs.LinuxDeviceCgroup
	// Env is NAME=VALUE for the tasks, applied after the image's; a module's
	// LD_LIBRARY_PATH or PATH goes before the image's value (MergeEnv).
	Env []string
	// Hooks are OCI hooks to run (from a CDI spec).
	Hooks *specs.Hooks
	// Notes are for the user (srun's output): something works, but not as
	// well as it could.
	Notes []string
	// Summary says in a few words what was added, for the daemon's log.
	Summary string
}

// pathVars are the variables whose module values go before the image's.
var pathVars = map[string]bool{"LD_LIBRARY_PATH": true, "PATH": true}

// MergeEnv returns the tasks' environment: image's NAME=VALUE entries with
// each module's applied in order. A module's value replaces the image's,
// except for LD_LIBRARY_PATH and PATH, where it goes first (with ':').
// Order: the image's variables in their order, then new ones as they come.
func MergeEnv(image []string, modules ...[]string) []string {
	out := append([]string(nil), image...)
	index := map[string]int{}
	for i, e := range out {
		name, _, _ := strings.Cut(e, "=")
		index[name] = i
	}
	for _, env := range modules {
		for _, e := range env {
			name, value, ok := strings.Cut(e, "=")
			if !ok || name == "" {
				continue
			}
			i, seen := index[name]
			if !seen {
				index[name] = len(out)
				out = append(out, e)
				continue
			}
			if _, old, _ := strings.Cut(out[i], "="); pathVars[name] && old != "" {
				value += ":" + old
			}
			out[i] = name + "=" + value
		}
	}
	return out
}

// ErrUnknownHook is returned by Resolve for a name the node does not offer.
var ErrUnknownHook = errors.New("unknown hook")

// Resolve reads a job's --container-hooks list against what the node
// offers. NAME adds an enabled module or a hooks.d file (by its name without
// ".json"); no-NAME drops a module that applies by default; "none" drops
// them all. It returns the modules to apply, in the order given by
// enabled, and every name the job asked for or got by default (sorted), for
// the annotations hooks.d files match on.
func Resolve(list string, enabled []Module, hookNames []string) (modules []Module, names []string, err error) {
	on := map[string]bool{}
	known := map[string]bool{}
	for _, m := range enabled {
		known[m.Name()] = true
		if o, ok := m.(OptIn); !ok || !o.OptIn() {
			on[m.Name()] = true
		}
	}
	for _, n := range hookNames {
		known[n] = true
	}
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		name, drop := strings.CutPrefix(item, "no-")
		switch {
		case item == "":
		case item == "none":
			for n := range on {
				delete(on, n)
			}
		case !known[name]:
			offered := make([]string, 0, len(known))
			for n := range known {
				offered = append(offered, n)
			}
			sort.Strings(offered)
			return nil, nil, fmt.Errorf("--container-hooks: %w %q (this node offers: %s)", ErrUnknownHook, name, strings.Join(offered, ", "))
		case drop:
			delete(on, name)
		default:
			on[name] = true
		}
	}
	for _, m := range enabled {
		if on[m.Name()] {
			modules = append(modules, m)
		}
	}
	for n := range on {
		names = append(names, n)
	}
	sort.Strings(names)
	return modules, names, nil
}

// deviceResult adds the device nodes at paths (inside root), with their
// cgroup rules, to r.
func deviceResult(r *Result, root string, paths []string) error {
	for _, p := range paths {
		d, err := devices.Device(root, p)
		if err != nil {
			return err
		}
		r.Devices = append(r.Devices, d)
		r.DeviceRules = append(r.DeviceRules, devices.CgroupRule(d))
	}
	return nil
}

// bindRO is a read-only bind of root+src on dst.
func bindRO(root, src, dst string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: filepath.Join(root, src), Options: []string{"rbind", "ro", "nosuid", "nodev"}}
}

// bindRW is a writable bind of root+src on dst.
func bindRW(root, src, dst string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: filepath.Join(root, src), Options: []string{"rbind", "nosuid", "nodev"}}
}
