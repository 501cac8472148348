package hooks

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	podhooks "go.podman.io/common/pkg/hooks"
	current "go.podman.io/common/pkg/hooks/1.0.0"
	"golang.org/x/sys/unix"
)

// DefaultDirs are podman's hooks.d directories, in increasing precedence: a
// file in a later directory masks the file of the same name in an earlier one.
var DefaultDirs = []string{podhooks.DefaultDir, podhooks.OverrideDir}

// podmanOnlyStages are stages podman runs itself rather than through the
// OCI runtime. Files using them load (as under podman), but those stages
// are skipped, with a warning.
var podmanOnlyStages = []string{"precreate"}

// Set is the hooks read from hooks.d directories, by file name.
type Set struct {
	hooks map[string]*current.Hook
}

// Match is what hooks.d conditions look at.
type Match struct {
	Annotations map[string]string
	// Command is the step's command (process.args[0] under podman; the
	// container's own first process is podman-hpc's init). "" matches no
	// "commands" condition.
	Command string
	// HasBindMounts: the user asked for bind mounts (--container-mounts).
	HasBindMounts bool
}

// Matched is a hook chosen for a container, for one stage.
type Matched struct {
	Name  string // its file name, e.g. "oci-nvidia-hook.json"
	Stage string // the OCI stage; "prestart" reads as "createRuntime"
	Hook  specs.Hook
}

// ReadDirs reads the hooks of dirs as podman does: *.json files, schema
// 1.0.0 or legacy 0.1.0, parsed and validated by podman's own code; a
// missing directory is empty; a later directory's file masks an earlier
// one's of the same name. A hook whose program does not exist is left out,
// as podman does, and named in the returned warnings. Any other bad file (not
// JSON, an unknown stage or version, a bad regular expression) is an error
// naming it: podman refuses to create containers then too.
func ReadDirs(dirs []string) (s *Set, warnings []string, err error) {
	s = &Set{hooks: map[string]*current.Hook{}}
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, warnings, fmt.Errorf("hooks.d: %w", err)
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			h, err := readHook(p)
			switch {
			case errors.Is(err, podhooks.ErrNoJSONSuffix):
				continue
			case errors.Is(err, fs.ErrNotExist):
				warnings = append(warnings, fmt.Sprintf("hooks.d: %s left out: %v", p, err))
				continue
			case err != nil:
				return nil, warnings, fmt.Errorf("hooks.d: %s: %w", p, err)
			}
			s.hooks[e.Name()] = h
		}
	}
	return s, warnings, nil
}

// parsed keeps the hooks files read before, by path. A file is parsed again
// only once it changed: each container's start need not pay podman's
// parsing and validation of every file, and an edit still applies to the
// next container, as under podman.
var parsed = struct {
	sync.Mutex
	hooks map[string]parsedHook
}{hooks: map[string]parsedHook{}}

type parsedHook struct {
	stamp fileStamp
	hook  *current.Hook
}

// fileStamp tells a file's versions apart: a rewrite or a replacement
// changes at least one of these.
type fileStamp struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

// readHook is podhooks.Read, through the cache of files parsed before.
// Callers only read the hook it returns.
func readHook(path string) (*current.Hook, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || !strings.HasSuffix(path, ".json") {
		return podhooks.Read(path, podmanOnlyStages) // its own error, as podman says it
	}
	stamp := fileStamp{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
	parsed.Lock()
	p, ok := parsed.hooks[path]
	parsed.Unlock()
	if ok && p.stamp == stamp {
		return p.hook, nil
	}
	h, err := podhooks.Read(path, podmanOnlyStages)
	if err != nil {
		return nil, err
	}
	parsed.Lock()
	parsed.hooks[path] = parsedHook{stamp: stamp, hook: h}
	parsed.Unlock()
	return h, nil
}

// Names returns the hooks' file names without ".json" and without a
// leading ordering number ("01-marker.json" is "marker"), sorted and
// unique: what a job may name in --container-hooks.
func (s *Set) Names() []string {
	seen := map[string]bool{}
	out := make([]string, 0, len(s.hooks))
	for name := range s.hooks {
		n := strings.TrimSuffix(name, ".json")
		if i := strings.IndexByte(n, '-'); i > 0 && strings.Trim(n[:i], "0123456789") == "" && i+1 < len(n) {
			n = n[i+1:]
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// Select returns the hooks whose conditions m meets, in podman's order:
// files sorted by lowercased name, each hook's stages in its order.
// Stages podman runs itself (precreate) come back in skipped.
func (s *Set) Select(m Match) (hooks []Matched, skipped []Matched, err error) {
	names := make([]string, 0, len(s.hooks))
	for name := range s.hooks {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return strings.ToLower(names[i]) < strings.ToLower(names[j]) })
	// podman matches "commands" on the container's process.args[0].
	config := &specs.Spec{}
	if m.Command != "" {
		config.Process = &specs.Process{Args: []string{m.Command}}
	}
	for _, name := range names {
		h := s.hooks[name]
		ok, err := match(&h.When, config, m.Annotations, m.HasBindMounts)
		if err != nil {
			return nil, nil, fmt.Errorf("hooks.d: matching %s: %w", name, err)
		}
		if !ok {
			continue
		}
		for _, stage := range h.Stages {
			mh := Matched{Name: name, Stage: stage, Hook: h.Hook}
			switch stage {
			case "prestart":
				mh.Stage = "createRuntime"
			case "precreate":
				skipped = append(skipped, mh)
				continue
			}
			hooks = append(hooks, mh)
		}
	}
	return hooks, skipped, nil
}

// AddToSpec appends hooks to the spec's stages, in order.
func AddToSpec(s *specs.Spec, hooks []Matched) error {
	if len(hooks) == 0 {
		return nil
	}
	if s.Hooks == nil {
		s.Hooks = &specs.Hooks{}
	}
	for _, h := range hooks {
		switch h.Stage {
		case "createRuntime":
			s.Hooks.CreateRuntime = append(s.Hooks.CreateRuntime, h.Hook)
		case "createContainer":
			s.Hooks.CreateContainer = append(s.Hooks.CreateContainer, h.Hook)
		case "startContainer":
			s.Hooks.StartContainer = append(s.Hooks.StartContainer, h.Hook)
		case "poststart":
			s.Hooks.Poststart = append(s.Hooks.Poststart, h.Hook)
		case "poststop":
			s.Hooks.Poststop = append(s.Hooks.Poststop, h.Hook)
		default:
			return fmt.Errorf("hook %s: unknown stage %q", h.Name, h.Stage)
		}
	}
	return nil
}

// FromSpec lists the hooks of h (a module's, from a CDI spec) as matched
// hooks named name; prestart reads as createRuntime.
func FromSpec(name string, h *specs.Hooks) []Matched {
	if h == nil {
		return nil
	}
	var out []Matched
	for _, s := range []struct {
		stage string
		hooks []specs.Hook
	}{
		//lint:ignore SA1019 CDI specs still write prestart hooks: they run as createRuntime, as podman runs them
		{"createRuntime", h.Prestart},
		{"createRuntime", h.CreateRuntime},
		{"createContainer", h.CreateContainer},
		{"startContainer", h.StartContainer},
		{"poststart", h.Poststart},
		{"poststop", h.Poststop},
	} {
		for _, hk := range s.hooks {
			out = append(out, Matched{Name: name, Stage: s.stage, Hook: hk})
		}
	}
	return out
}

// StepDependence says what of a step, beyond what its container is made
// of, may change which hooks Select returns: Command, when a hook has a
// "commands" condition; the step itself, when a hook's annotation
// condition may match stepAnnotation's key (the step's id is its value).
// A container made for one step serves another (node's reuse) only when
// neither differs.
func (s *Set) StepDependence(stepAnnotation string) (command, step bool) {
	for _, h := range s.hooks {
		if len(h.When.Commands) > 0 {
			command = true
		}
		for k := range h.When.Annotations {
			// A pattern that does not compile fails Select anyway.
			if re, err := rx(k); err != nil || re.MatchString(stepAnnotation) {
				step = true
			}
		}
	}
	return command, step
}
