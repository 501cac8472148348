package main

import (
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// containerRequest is a CONTAINER message from the plugin in slurmstepd.
type containerRequest struct {
	Job, Step string
	UID, GID  uint32
	Image     string
	Workdir   string // --container-workdir; "" for the image's
	Mounts    []userMount
	Writable  bool
	MountHome bool
	Script    string // the batch script, bound read-only for a batch step
	Auth      []byte // the user's auth.json, read by the plugin as the user

	Name, NameMode string // --container-name=NAME:MODE; Scope "job" or "global"
	Scope          string
	Save           string // --container-save's path, on the step's first node
	Entrypoint     bool
	EntrypointLog  bool
	RemapRoot      bool
	Unshare        []specs.LinuxNamespaceType

	Hooks   string // --container-hooks: NAME,no-NAME,none (hooks.Resolve)
	Command string // the step's command (argv[0]): hooks.d "commands" match it
	// Env is the step's variables the modules look at (GPU allocation,
	// PMIx directories), as the plugin sent them.
	Env map[string]string
}

// userMount is one --container-mounts entry.
type userMount struct {
	Src, Dst string
	Options  []string // runtime-spec mount options from the user's FLAGS
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)

var unshareable = map[string]specs.LinuxNamespaceType{
	"net": specs.NetworkNamespace, "ipc": specs.IPCNamespace, "uts": specs.UTSNamespace,
}

// mountFlags maps the user's FLAGS to mount options; the plugin already
// refused unknown ones, the daemon checks again (it trusts no client).
var mountFlags = map[string]string{
	"ro": "ro", "rw": "rw", "bind": "", "rbind": "",
	"nosuid": "nosuid", "nodev": "nodev", "noexec": "noexec",
	"private": "private", "rprivate": "rprivate", "slave": "slave", "rslave": "rslave",
	"shared": "shared", "rshared": "rshared",
}

func parseUserMount(s string) (userMount, error) {
	parts := strings.Split(s, ":")
	if len(parts) > 3 || parts[0] == "" {
		return userMount{}, fmt.Errorf("--container-mounts: bad entry %q (want SRC:DST[:FLAGS])", s)
	}
	m := userMount{Src: parts[0], Dst: parts[0]}
	if len(parts) > 1 {
		m.Dst = parts[1]
	}
	if !path.IsAbs(m.Dst) {
		return userMount{}, fmt.Errorf("--container-mounts: destination %q is not an absolute path", m.Dst)
	}
	if d := path.Clean(m.Dst); d == "/" || d == reservedDir || strings.HasPrefix(d, reservedDir+"/") {
		return userMount{}, fmt.Errorf("--container-mounts: destination %q: / and %s are podman-hpc's own (the container's init lives there); pick another destination", m.Dst, reservedDir)
	}
	if len(parts) == 3 && parts[2] != "" {
		for _, f := range strings.Split(parts[2], "+") {
			opt, ok := mountFlags[f]
			if !ok {
				return userMount{}, fmt.Errorf("--container-mounts: unknown mount flag %q", f)
			}
			if opt != "" {
				m.Options = append(m.Options, opt)
			}
		}
	}
	return m, nil
}

func parseContainerRequest(m *wire.Message) (*containerRequest, error) {
	get := func(k string) string { v, _ := m.Get(k); return v }
	r := &containerRequest{
		Job: get("job"), Step: get("step"), Image: get("image"), Workdir: get("workdir"),
		Writable: get("writable") == "1", MountHome: get("mount_home") == "1", Script: get("script"),
		Hooks: get("hooks"), Command: get("command"), Env: map[string]string{},
	}
	for _, e := range m.All("jobenv") {
		if name, value, ok := strings.Cut(e, "="); ok && name != "" {
			r.Env[name] = value
		}
	}
	for k, dst := range map[string]*uint32{"uid": &r.UID, "gid": &r.GID} {
		n, err := strconv.ParseUint(get(k), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("request: bad %s %q", k, get(k))
		}
		*dst = uint32(n)
	}
	if _, err := strconv.ParseUint(r.Job, 10, 32); err != nil {
		return nil, fmt.Errorf("request: bad job id %q", r.Job)
	}
	if _, err := strconv.ParseUint(r.Step, 10, 32); err != nil {
		return nil, fmt.Errorf("request: bad step id %q", r.Step)
	}
	if a, ok := m.Get("auth"); ok && a != "" {
		r.Auth = []byte(a)
	}
	r.Name, r.NameMode, r.Scope, r.Save = get("name"), get("name_mode"), get("scope"), get("save")
	r.Entrypoint, r.EntrypointLog, r.RemapRoot = get("entrypoint") == "1", get("entrypoint_log") == "1", get("remap_root") == "1"
	if r.Image == "" && r.Name == "" {
		return nil, fmt.Errorf("request: no image")
	}
	if r.Name != "" {
		if !validName.MatchString(r.Name) {
			return nil, fmt.Errorf("--container-name: bad name %q", r.Name)
		}
		if !slices.Contains([]string{"auto", "create", "exec", "no_exec"}, r.NameMode) {
			return nil, fmt.Errorf("--container-name: unknown mode %q", r.NameMode)
		}
		if r.Scope != "global" {
			r.Scope = "job"
		}
	}
	if r.Save != "" && !path.IsAbs(r.Save) {
		return nil, fmt.Errorf("--container-save: %q is not an absolute path", r.Save)
	}
	if u := get("unshare"); u != "" {
		for _, ns := range strings.Split(u, ",") {
			t, ok := unshareable[ns]
			if !ok {
				return nil, fmt.Errorf("--container-unshare: unknown namespace %q (want net, ipc, uts)", ns)
			}
			r.Unshare = append(r.Unshare, t)
		}
	}
	if r.Workdir != "" && !path.IsAbs(r.Workdir) {
		return nil, fmt.Errorf("--container-workdir: %q is not an absolute path", r.Workdir)
	}
	if r.Script != "" && !path.IsAbs(r.Script) {
		return nil, fmt.Errorf("request: batch script path %q is not absolute", r.Script)
	}
	for _, s := range m.All("mount") {
		um, err := parseUserMount(s)
		if err != nil {
			return nil, err
		}
		r.Mounts = append(r.Mounts, um)
	}
	return r, nil
}
