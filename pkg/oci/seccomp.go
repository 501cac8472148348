package oci

import (
	"runtime"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The tasks' seccomp filter is the plugin's (spank/harden.c), installed in
// each task before exec. The container's own processes (its init, the
// image's entrypoint and whatever it leaves running) get the same filter
// through the spec, applied by the runtime: nothing of the container runs
// with fewer limits than its tasks. spank/cgotest compares the two lists.

// seccompDenial is a system call the filter refuses, with its errno.
type seccompDenial struct {
	names []string
	errno syscall.Errno
}

// seccompDenied is harden.c's denied[], by name. Names a kernel or
// architecture lacks are skipped by the runtime (libseccomp resolves them).
var seccompDenied = []seccompDenial{
	{[]string{
		"kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
		"create_module", "query_module", "get_kernel_syms", "open_by_handle_at", "reboot",
		"swapon", "swapoff", "acct", "settimeofday", "clock_settime", "vhangup",
		"lookup_dcookie", "nfsservctl", "iopl", "ioperm", "uselib", "_sysctl",
		"userfaultfd", "keyctl", "add_key", "request_key",
	}, syscall.EPERM},
	{[]string{"io_uring_setup", "io_uring_enter", "io_uring_register"}, syscall.ENOSYS},
}

// seccompFaked is harden.c's faked[]: under --container-remap-root they
// return 0 and do nothing (the user namespace maps one id).
var seccompFaked = []string{
	"setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
	"setfsuid", "setfsgid", "chown", "lchown", "fchown", "fchownat",
}

// TaskSeccomp is the tasks' filter as a spec's: everything allowed but the
// denied calls; another architecture's calls (32-bit, x32) fail, as the
// filter is for this one only.
func TaskSeccomp(remapRoot bool) *specs.LinuxSeccomp {
	s := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow}
	switch runtime.GOARCH {
	case "amd64":
		s.Architectures = []specs.Arch{specs.ArchX86_64}
	case "arm64":
		s.Architectures = []specs.Arch{specs.ArchAARCH64}
	}
	for _, d := range seccompDenied {
		errno := uint(d.errno)
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: d.names, Action: specs.ActErrno, ErrnoRet: &errno})
	}
	if remapRoot {
		zero := uint(0)
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{Names: seccompFaked, Action: specs.ActErrno, ErrnoRet: &zero})
	}
	return s
}

// WithSeccomp gives the container's processes the tasks' filter.
func WithSeccomp(remapRoot bool) SpecOpt {
	return func(s *specs.Spec) error {
		s.Linux.Seccomp = TaskSeccomp(remapRoot)
		return nil
	}
}
