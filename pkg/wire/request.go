package wire

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The CONTAINER request: what the plugin in slurmstepd asks of the daemon
// for a step. Its encoding is spank/request.c's (phpc_container_request);
// spank/cgotest encodes requests there and decodes them here, and checks
// that the lists below equal the C side's.

// RequestKeys are the keys of a CONTAINER request, in the order the plugin
// writes them. "group", "mount" and "jobenv" repeat; the others appear at
// most once.
var RequestKeys = []string{
	"job", "step", "uid", "gid", "user", "home", "shell", "group", "plugin_version", "image", "workdir", "mount",
	"writable", "mount_home", "entrypoint", "remap_root", "entrypoint_log",
	"name", "name_mode", "scope", "unshare", "save", "command", "script", "hooks",
	"jobenv", "auth",
}

// BatchStep is Slurm's step id of a batch script (SLURM_BATCH_SCRIPT,
// 0xfffffffb), as the request carries it.
const BatchStep = "4294967291"

// ReservedDir holds what the daemon puts into every container (its init,
// modules' files): no user mount may land on it, nor on the root above it.
const ReservedDir = "/.podman-hpc"

// InReserved says whether the container path p (absolute) is ReservedDir or
// in it, once cleaned: every check of a destination against it is this one.
func InReserved(p string) bool {
	p = path.Clean(p)
	return p == ReservedDir || strings.HasPrefix(p, ReservedDir+"/")
}

// NameModes are --container-name's modes (pyxis's).
var NameModes = []string{"auto", "create", "exec", "no_exec"}

// UnshareNamespaces are the names --container-unshare accepts, in the
// order the plugin documents them.
var UnshareNamespaces = []string{"net", "ipc", "uts"}

var unshareable = map[string]specs.LinuxNamespaceType{
	"net": specs.NetworkNamespace, "ipc": specs.IPCNamespace, "uts": specs.UTSNamespace,
}

// UnshareName is the --container-unshare name of the namespace type t ("net"
// for the network namespace), or t itself for one it does not take.
func UnshareName(t specs.LinuxNamespaceType) string {
	for n, u := range unshareable {
		if u == t {
			return n
		}
	}
	return string(t)
}

// MountFlags maps the user's --container-mounts FLAGS to runtime-spec mount
// options ("": the flag is accepted and adds none). The plugin refuses
// unknown ones already; the daemon checks again (it trusts no client).
// Never suid or dev: every user mount is nosuid,nodev, and a later option
// would undo that.
var MountFlags = map[string]string{
	"ro": "ro", "rw": "rw", "bind": "", "rbind": "",
	"nosuid": "nosuid", "nodev": "nodev", "noexec": "noexec",
	"private": "private", "rprivate": "rprivate", "slave": "slave", "rslave": "rslave",
	"shared": "shared", "rshared": "rshared", "unbindable": "unbindable", "runbindable": "runbindable",
}

// The special sources of --container-mounts (pyxis's and enroot's):
// "tmpfs:/DST[:OPTIONS]" mounts a fresh tmpfs at DST, "umount:/DST" drops
// the mount the defaults would put at DST (the home, a site mount).
const (
	TmpfsSource  = "tmpfs"
	UmountSource = "umount"
)

// TmpfsFlags are the flags a tmpfs:/DST entry may have besides the
// valued tmpfs options (TmpfsOption): the daemon adds nosuid,nodev and
// makes the job user its owner.
var TmpfsFlags = []string{"ro", "rw", "nosuid", "nodev", "noexec"}

// tmpfsValued are tmpfs(5)'s options that take a value, and how to check
// it. uid= and gid= are the daemon's (the job user's), mpol= is left out.
var tmpfsValued = map[string]*regexp.Regexp{
	"size":      regexp.MustCompile(`^[0-9]{1,20}[kKmMgGtTpPeE%]?$`),
	"nr_blocks": regexp.MustCompile(`^[0-9]{1,20}[kKmMgGtTpPeE]?$`),
	"nr_inodes": regexp.MustCompile(`^[0-9]{1,20}[kKmMgGtTpPeE]?$`),
	"mode":      regexp.MustCompile(`^0?[0-7]{1,4}$`),
	"huge":      regexp.MustCompile(`^(never|always|within_size|advise)$`),
}

// TmpfsOption checks one option of a tmpfs:/DST:OPTIONS entry: a
// TmpfsFlags flag, or size=, nr_blocks=, nr_inodes=, mode= or huge= with a
// value tmpfs(5) takes.
func TmpfsOption(o string) error {
	if slices.Contains(TmpfsFlags, o) {
		return nil
	}
	k, v, ok := strings.Cut(o, "=")
	re := tmpfsValued[k]
	switch {
	case !ok || re == nil:
		return fmt.Errorf("unknown tmpfs option %q (known: size=, nr_blocks=, nr_inodes=, mode=, huge=, %s)", o, strings.Join(TmpfsFlags, ", "))
	case !re.MatchString(v):
		return fmt.Errorf("bad value in tmpfs option %q", o)
	}
	return nil
}

// AuthFile is one place the user's registry credentials may be: the file
// Suffix under the directory the variable Var names (Suffix "": the
// variable names the file).
type AuthFile struct{ Var, Suffix string }

// AuthFiles is where the plugin (spank/request.c, as the job user) and the
// client commands look for the user's registry credentials, first found
// first: podman's and skopeo's order, then Docker's file.
var AuthFiles = []AuthFile{
	{"REGISTRY_AUTH_FILE", ""},
	{"XDG_RUNTIME_DIR", "/containers/auth.json"},
	{"HOME", "/.config/containers/auth.json"},
	{"HOME", "/.docker/config.json"},
}

// ValidName is what a container name (--container-name's NAME) may be.
var ValidName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)

// OptionError is an error about one of the user's options: Option is the
// option as the user would recognise it ("--container-mounts",
// "--container-name=NAME:MODE"), and the message reads "OPTION: cause".
// The daemon passes such an error to srun as it is; any other error of a
// container's start is about the image.
type OptionError struct {
	Option string
	Err    error
}

func (e *OptionError) Error() string { return e.Option + ": " + e.Err.Error() }
func (e *OptionError) Unwrap() error { return e.Err }

// OptionErrorf returns an *OptionError about option with a formatted cause
// (%w wraps as in fmt.Errorf).
func OptionErrorf(option, format string, a ...any) error {
	return &OptionError{Option: option, Err: fmt.Errorf(format, a...)}
}

// ContainerRequest is a CONTAINER message from the plugin in slurmstepd,
// checked: ids are numbers, paths absolute, names and modes known.
type ContainerRequest struct {
	Job, Step string
	UID, GID  uint32
	Image     string
	Workdir   string // --container-workdir, absolute (a relative one is the root's); "" for the image's
	Mounts    []UserMount
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
	// PluginVersion is the version of the plugin that sent the request
	// ("" from a plugin that does not say).
	PluginVersion string
	// Account is the job user as the node's own user database (NSS: LDAP,
	// SSSD...) knows them, resolved by the plugin in slurmstepd, with the
	// job's groups as Slurm gives them; nil from a plugin that does not
	// send it (the daemon then looks the user up itself).
	Account *Account
}

// Account is the job user: "user", "home", "shell" and the repeated
// "group" GID:NAME fields of a request, the primary group first.
type Account struct {
	Name, Home, Shell string
	Groups            []Group
}

// Group is one of the job's groups; Name is "" when the node has none.
type Group struct {
	GID  uint32
	Name string
}

// UserMount is one --container-mounts entry (or one of the admin's mounts).
type UserMount struct {
	Src, Dst string
	// Options are runtime-spec mount options from the user's FLAGS; for
	// a tmpfs, its tmpfs options.
	Options []string
}

// IsTmpfs reports whether m is a tmpfs:/DST entry: a fresh tmpfs.
func (m UserMount) IsTmpfs() bool { return m.Src == TmpfsSource }

// IsUmount reports whether m is an umount:/DST entry: no mount, but the
// defaults' mount at Dst dropped.
func (m UserMount) IsUmount() bool { return m.Src == UmountSource }

// ErrCrossDevice is the cause of a destination that climbs out of the
// container's root (/home:../home): the kernel's words for it, as pyxis
// users see them.
//
//lint:ignore ST1005 the kernel's words (strerror(EXDEV)), which pyxis's users search for
var ErrCrossDevice = errors.New("Invalid cross-device link")

// climbsOut reports whether p, read from the root, goes above it at some
// point ("..", "/a/../../b").
func climbsOut(p string) bool {
	depth := 0
	for _, c := range strings.Split(p, "/") {
		switch c {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}

// ParseUserMount reads one SRC[:DST[:FLAGS]] entry, whose paths may hold
// fstab's escapes (UnescapeFstab). SRC is absolute (the plugin resolves a
// relative one in the job's working directory), or TmpfsSource or
// UmountSource. DST is read from the container's root (a relative one too)
// and must not climb out of it, nor be / or under ReservedDir; it is
// returned absolute and clean. FLAGS are MountFlags keys joined with '+'
// (a tmpfs's: TmpfsOption's). Errors are *OptionError about
// --container-mounts.
func ParseUserMount(s string) (UserMount, error) {
	const opt = "--container-mounts"
	parts := strings.Split(s, ":")
	if len(parts) > 3 || parts[0] == "" {
		return UserMount{}, OptionErrorf(opt, "bad entry %q (want SRC:DST[:FLAGS])", s)
	}
	src, dst := parts[0], parts[0]
	if len(parts) > 1 {
		dst = parts[1]
	}
	var err error
	if src, err = UnescapeFstab(src); err != nil {
		return UserMount{}, OptionErrorf(opt, "%w", err)
	}
	if dst, err = UnescapeFstab(dst); err != nil {
		return UserMount{}, OptionErrorf(opt, "%w", err)
	}
	m := UserMount{Src: src}
	special := m.IsTmpfs() || m.IsUmount()
	switch {
	case special && len(parts) == 1:
		return UserMount{}, OptionErrorf(opt, "%q needs a destination (%s:/DST)", s, src)
	case !special && !path.IsAbs(src):
		return UserMount{}, OptionErrorf(opt, "source %q is a relative path: the plugin resolves it in the job's working directory (is it the daemon's version?)", src)
	case dst == "":
		return UserMount{}, OptionErrorf(opt, "empty destination in %q (want SRC:DST[:FLAGS])", s)
	case climbsOut(dst):
		return UserMount{}, OptionErrorf(opt, "destination %q climbs out of the container's root: %w", dst, ErrCrossDevice)
	}
	m.Dst = path.Join("/", dst)
	if m.Dst == "/" || InReserved(m.Dst) {
		return UserMount{}, OptionErrorf(opt, "destination %q: / and %s are podman-hpc's own (the container's init lives there); pick another destination", dst, ReservedDir)
	}
	if len(parts) < 3 || parts[2] == "" {
		return m, nil
	}
	for _, f := range strings.Split(parts[2], "+") {
		switch {
		case m.IsUmount():
			return UserMount{}, OptionErrorf(opt, "%q: umount:/DST takes no flags", s)
		case m.IsTmpfs():
			if err := TmpfsOption(f); err != nil {
				return UserMount{}, OptionErrorf(opt, "%s: %w", s, err)
			}
			m.Options = append(m.Options, f)
		default:
			o, ok := MountFlags[f]
			if !ok {
				return UserMount{}, OptionErrorf(opt, "unknown mount flag %q", f)
			}
			if o != "" {
				m.Options = append(m.Options, o)
			}
		}
	}
	return m, nil
}

// ParseContainerRequest checks and decodes a CONTAINER message. An error
// about one of the user's options is an *OptionError; one about the
// request itself (a bad id, no image) reads "request: ...".
func ParseContainerRequest(m *Message) (*ContainerRequest, error) {
	get := func(k string) string { v, _ := m.Get(k); return v }
	bad := func(format string, a ...any) error { return fmt.Errorf("request: "+format, a...) }
	r := &ContainerRequest{
		Job: get("job"), Step: get("step"), Image: get("image"), Workdir: get("workdir"),
		Writable: get("writable") == "1", MountHome: get("mount_home") == "1", Script: get("script"),
		Hooks: get("hooks"), Command: get("command"), Env: map[string]string{},
		PluginVersion: get("plugin_version"),
	}
	for _, e := range m.All("jobenv") {
		if name, value, ok := strings.Cut(e, "="); ok && name != "" {
			r.Env[name] = value
		}
	}
	for k, dst := range map[string]*uint32{"uid": &r.UID, "gid": &r.GID} {
		n, err := strconv.ParseUint(get(k), 10, 32)
		if err != nil {
			return nil, bad("bad %s %q", k, get(k))
		}
		*dst = uint32(n)
	}
	if _, ok := m.Get("user"); ok {
		a, err := parseAccount(m, r.GID)
		if err != nil {
			return nil, err
		}
		r.Account = a
	}
	if _, err := strconv.ParseUint(r.Job, 10, 32); err != nil {
		return nil, bad("bad job id %q", r.Job)
	}
	if _, err := strconv.ParseUint(r.Step, 10, 32); err != nil {
		return nil, bad("bad step id %q", r.Step)
	}
	if a, ok := m.Get("auth"); ok && a != "" {
		r.Auth = []byte(a)
	}
	r.Name, r.NameMode, r.Scope, r.Save = get("name"), get("name_mode"), get("scope"), get("save")
	r.Entrypoint, r.EntrypointLog, r.RemapRoot = get("entrypoint") == "1", get("entrypoint_log") == "1", get("remap_root") == "1"
	if r.Image == "" && r.Name == "" {
		return nil, bad("no image")
	}
	if r.Name != "" {
		if !ValidName.MatchString(r.Name) {
			return nil, OptionErrorf("--container-name", "bad name %q", r.Name)
		}
		if !slices.Contains(NameModes, r.NameMode) {
			return nil, OptionErrorf("--container-name", "unknown mode %q", r.NameMode)
		}
		if r.Scope != "global" {
			r.Scope = "job"
		}
	}
	switch {
	case r.Save != "" && !path.IsAbs(r.Save):
		return nil, OptionErrorf("--container-save", "%q is not an absolute path", r.Save)
	case strings.HasSuffix(r.Save, "/"):
		return nil, OptionErrorf("--container-save", "%q is a directory; name the file to write", r.Save)
	}
	if u := get("unshare"); u != "" {
		for _, ns := range strings.Split(u, ",") {
			t, ok := unshareable[ns]
			if !ok {
				return nil, OptionErrorf("--container-unshare", "unknown namespace %q (want %s)", ns, strings.Join(UnshareNamespaces, ", "))
			}
			r.Unshare = append(r.Unshare, t)
		}
	}
	if r.Workdir != "" && !path.IsAbs(r.Workdir) {
		// As a shell in the container's root would: "../" is the root.
		r.Workdir = "/" + r.Workdir
	}
	if r.Script != "" && !path.IsAbs(r.Script) {
		return nil, bad("batch script path %q is not absolute", r.Script)
	}
	for _, s := range m.All("mount") {
		um, err := ParseUserMount(s)
		if err != nil {
			return nil, err
		}
		r.Mounts = append(r.Mounts, um)
	}
	return r, nil
}

// parseAccount reads the request's account fields. They end up in the
// container's /etc/passwd and /etc/group: a name, home or shell that could
// break a line of those files (':' or a newline) is refused, as is a first
// group that is not the request's gid.
func parseAccount(m *Message, gid uint32) (*Account, error) {
	bad := func(format string, a ...any) error { return fmt.Errorf("request: "+format, a...) }
	field := func(s string) bool { return !strings.ContainsAny(s, ":\n") && len(s) <= 4096 }
	get := func(k string) string { v, _ := m.Get(k); return v }
	a := &Account{Name: get("user"), Home: get("home"), Shell: get("shell")}
	if a.Name == "" || !field(a.Name) || !field(a.Home) || !field(a.Shell) {
		return nil, bad("bad account %q (home %q, shell %q)", a.Name, a.Home, a.Shell)
	}
	if a.Home != "" && !path.IsAbs(a.Home) {
		return nil, bad("home %q is not an absolute path", a.Home)
	}
	for _, g := range m.All("group") {
		id, name, _ := strings.Cut(g, ":")
		n, err := strconv.ParseUint(id, 10, 32)
		if err != nil || !field(name) {
			return nil, bad("bad group %q", g)
		}
		a.Groups = append(a.Groups, Group{GID: uint32(n), Name: name})
	}
	if len(a.Groups) == 0 || a.Groups[0].GID != gid {
		return nil, bad("the account's first group is not the job's gid %d", gid)
	}
	return a, nil
}
