// Package oci builds the OCI runtime-spec of a step's container from small
// composable options, and drives the OCI runtime (runc or crun) as a binary.
package oci

import (
	"fmt"
	"path"
	"slices"
	"sort"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// SpecVersion is the runtime-spec version written into config.json.
const SpecVersion = "1.0.2"

// SpecOpt changes one aspect of a spec; options are applied in order.
type SpecOpt func(*specs.Spec) error

// NewSpec returns the base spec with opts applied: the process runs as
// nobody until WithUser says otherwise, with no capabilities and
// no_new_privileges, in its own mount and PID namespaces and the host's other
// namespaces (pyxis's defaults), with the host's /proc, /sys read-only, and a
// minimal /dev.
//
// The PID namespace holds only what the container itself starts (its init,
// the image's entrypoint and whatever they fork): the tasks join the mount
// namespace, never the PID one, so they stay in the host's and keep Slurm's
// signals and accounting. When the init (its PID 1) dies at teardown, the
// kernel kills everything else in it: a process a user detached there
// (setsid, a double fork) cannot outlive the step.
func NewSpec(opts ...SpecOpt) (*specs.Spec, error) {
	s := &specs.Spec{
		// The oldest version with everything we use: crun 1.8 refuses
		// specs newer than it knows ("unknown version specified").
		Version: SpecVersion,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args:            []string{"/bin/sh"},
			Cwd:             "/",
			User:            specs.User{UID: 65534, GID: 65534},
			NoNewPrivileges: true,
			// No capabilities at all: the tasks that join are the job
			// user's and must not gain any through the container.
			Capabilities: &specs.LinuxCapabilities{},
		},
		Hostname: "",
		Mounts:   defaultMounts(),
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}},
			// Mask what the host's /proc would leak or let a root in a
			// user namespace poke at (as runc's and podman's defaults do).
			MaskedPaths: []string{
				"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
				"/proc/scsi", "/sys/firmware",
			},
			ReadonlyPaths: []string{
				"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq",
				"/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func defaultMounts() []specs.Mount {
	return []specs.Mount{
		// The tasks live in the host's PID namespace, so the host's /proc
		// is the right one: they see each other and Slurm's processes as on
		// the host, and /proc/self is themselves. A fresh procfs would show
		// the container's PID namespace, where the tasks are not.
		BindMount("/proc", "/proc", "nosuid", "noexec", "nodev"),
		{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		// The host's /dev/shm: ranks of one node share memory with each
		// other whether or not they joined the same container.
		{Destination: "/dev/shm", Type: "bind", Source: "/dev/shm", Options: []string{"rbind", "nosuid", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		// A writable /tmp of the container's own, shared by the node's
		// tasks, also when the root is read-only (Slurm checks TMPDIR).
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
	}
}

// WithRootfs sets the root filesystem; readonly makes the runtime remount it
// read-only once every mount point has been created.
func WithRootfs(dir string, readonly bool) SpecOpt {
	return func(s *specs.Spec) error {
		s.Root = &specs.Root{Path: dir, Readonly: readonly}
		return nil
	}
}

// WithProcess sets the container's first process.
func WithProcess(args, env []string, cwd string) SpecOpt {
	return func(s *specs.Spec) error {
		if len(args) == 0 {
			return fmt.Errorf("process: no arguments")
		}
		if !path.IsAbs(cwd) {
			return fmt.Errorf("process: working directory %q is not absolute", cwd)
		}
		s.Process.Args = args
		s.Process.Env = env
		s.Process.Cwd = cwd
		return nil
	}
}

// WithUser runs the process as uid/gid with the given supplementary groups.
func WithUser(uid, gid uint32, groups []uint32) SpecOpt {
	return func(s *specs.Spec) error {
		s.Process.User = specs.User{UID: uid, GID: gid, AdditionalGids: groups}
		return nil
	}
}

// WithMounts appends mounts after the defaults; a later mount over the same
// destination wins, as in the kernel.
func WithMounts(mounts ...specs.Mount) SpecOpt {
	return func(s *specs.Spec) error {
		for _, m := range mounts {
			if !path.IsAbs(m.Destination) {
				return fmt.Errorf("mount %s: destination %q is not absolute", m.Source, m.Destination)
			}
		}
		s.Mounts = append(s.Mounts, mounts...)
		return nil
	}
}

// BindMount returns a bind mount of src on dst; extra options (ro, nosuid,
// rprivate...) are appended to rbind.
func BindMount(src, dst string, options ...string) specs.Mount {
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: append([]string{"rbind"}, options...)}
}

// WithNamespaces makes the container unshare these namespaces (besides
// mount) from the host, e.g. "ipc" for --container-unshare=ipc.
func WithNamespaces(types ...specs.LinuxNamespaceType) SpecOpt {
	return func(s *specs.Spec) error {
		for _, t := range types {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t})
		}
		return nil
	}
}

// WithPrivateIPC gives a container of its own IPC namespace
// (--container-unshare=ipc) what goes with one: a /dev/shm of its own (a
// fresh tmpfs, not the host's) and its own /dev/mqueue, which the runtime
// mounts inside the new namespace. Apply it after WithRemappedRoot (which
// drops mqueue for a container in the host's IPC namespace).
func WithPrivateIPC() SpecOpt {
	return func(s *specs.Spec) error {
		own := map[string]specs.Mount{
			"/dev/shm":    {Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777"}},
			"/dev/mqueue": {Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		}
		for i, m := range s.Mounts {
			if o, ok := own[m.Destination]; ok {
				s.Mounts[i] = o
				delete(own, m.Destination)
			}
		}
		// After /dev, before anything a user or module mounts: in the
		// defaults' order.
		at := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev" }) + 1
		for _, d := range []string{"/dev/shm", "/dev/mqueue"} {
			if o, ok := own[d]; ok {
				s.Mounts = slices.Insert(s.Mounts, at, o)
				at++
			}
		}
		return nil
	}
}

// WithAnnotations adds annotations (hooks match on them); keys are sorted so
// that the spec is deterministic.
func WithAnnotations(a map[string]string) SpecOpt {
	return func(s *specs.Spec) error {
		if s.Annotations == nil {
			s.Annotations = map[string]string{}
		}
		keys := make([]string, 0, len(a))
		for k := range a {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s.Annotations[k] = a[k]
		}
		return nil
	}
}

// WithUserNamespace gives the container a user namespace that maps the job
// user's uid and gid to themselves and nothing else, as under pyxis and
// enroot (/proc/self/uid_map reads "UID UID 1"): whatever the container
// holds (its mount namespace, its mounts) is owned by a namespace in which
// the user has no id but their own, so no privilege over anything of the
// host. The process runs as uid and gid with no supplementary group (the
// job's others are unmapped there; the tasks keep theirs).
func WithUserNamespace(uid, gid uint32) SpecOpt {
	return withSingleID(uid, gid, uid, gid)
}

// WithRemappedRoot gives the container a user namespace in which uid and gid
// are root (0) and nothing else is mapped ("0 UID 1"): the user appears as
// root inside, with no privilege over anything of the host that the user
// lacks.
func WithRemappedRoot(uid, gid uint32) SpecOpt {
	return withSingleID(0, 0, uid, gid)
}

// hostHasMqueue says whether the node has an mqueue file system at
// /dev/mqueue (hostHasMqueueFS; tests replace it).
var hostHasMqueue = hostHasMqueueFS

// mqueueMagic is the mqueue file system's f_type (linux/magic.h).
const mqueueMagic = 0x19800202

func hostHasMqueueFS() bool {
	var st unix.Statfs_t
	return unix.Statfs("/dev/mqueue", &st) == nil && st.Type == mqueueMagic
}

// withSingleID maps inUID and inGID inside to uid and gid outside, and runs
// the process as them. A mount a user namespace may not make over the
// host's namespaces (mqueue of the host's IPC namespace) becomes a bind of
// the node's own /dev/mqueue, where it has one: the container shares that
// IPC namespace, so its queues are the tasks' already (mq_open).
func withSingleID(inUID, inGID, uid, gid uint32) SpecOpt {
	return func(s *specs.Spec) error {
		s.Linux.Namespaces = append([]specs.LinuxNamespace{{Type: specs.UserNamespace}}, s.Linux.Namespaces...)
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: inUID, HostID: uid, Size: 1}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: inGID, HostID: gid, Size: 1}}
		s.Process.User = specs.User{UID: inUID, GID: inGID}
		privateIPC := false
		for _, n := range s.Linux.Namespaces {
			privateIPC = privateIPC || n.Type == specs.IPCNamespace
		}
		var mounts []specs.Mount
		for _, m := range s.Mounts {
			if m.Type == "mqueue" && !privateIPC {
				if !hostHasMqueue() {
					continue // as on the node: none
				}
				m = BindMount("/dev/mqueue", m.Destination, "nosuid", "noexec", "nodev")
			}
			mounts = append(mounts, m)
		}
		s.Mounts = mounts
		return nil
	}
}

// WithDevices adds device nodes for the runtime to create in the
// container's /dev, and device cgroup rules (normally one allowing each).
func WithDevices(devices []specs.LinuxDevice, rules []specs.LinuxDeviceCgroup) SpecOpt {
	return func(s *specs.Spec) error {
		for _, d := range devices {
			if !path.IsAbs(d.Path) || (d.Type != "c" && d.Type != "b" && d.Type != "u" && d.Type != "p") {
				return fmt.Errorf("device %q (type %q): want an absolute path and type c, b, u or p", d.Path, d.Type)
			}
		}
		s.Linux.Devices = append(s.Linux.Devices, devices...)
		if len(rules) > 0 {
			if s.Linux.Resources == nil {
				s.Linux.Resources = &specs.LinuxResources{}
			}
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, rules...)
		}
		return nil
	}
}
