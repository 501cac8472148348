package cgotest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/podman-hpc/podman-hpc/pkg/oci"
	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// statusField is one line's value of /proc/PID/status ("" when absent).
func statusField(status, name string) string {
	m := regexp.MustCompile(`(?m)^` + name + `:\s*(\S+)$`).FindStringSubmatch(status)
	if m == nil {
		return ""
	}
	return m[1]
}

func ownedFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The filter makes privileged calls fail with EPERM, lets the others
// through, and fakes nothing without remap-root.
func TestSeccompFilter(t *testing.T) {
	path := ownedFile(t)
	bare, err := ProbeFilter(false, false, path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ProbeFilter(true, false, path)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Installed {
		t.Fatalf("filter not installed: %v", p.InstallErr)
	}
	if statusField(p.Status, "Seccomp") != "2" || statusField(p.Status, "NoNewPrivs") != "1" {
		t.Errorf("child's status: Seccomp %q NoNewPrivs %q, want 2 and 1", statusField(p.Status, "Seccomp"), statusField(p.Status, "NoNewPrivs"))
	}
	if statusField(bare.Status, "Seccomp") != "0" {
		t.Errorf("child without the filter has Seccomp %q", statusField(bare.Status, "Seccomp"))
	}
	if p.RebootRC != -1 || p.RebootErr != syscall.EPERM {
		t.Errorf("reboot with the filter: %d, %v; want EPERM", p.RebootRC, p.RebootErr)
	}
	// As root, the bad magic is what the kernel refuses without the filter:
	// EPERM above is the filter's.
	if os.Geteuid() == 0 && bare.RebootErr != syscall.EINVAL {
		t.Errorf("reboot without the filter, as root: %v; want EINVAL", bare.RebootErr)
	}
	if !p.GetpidOK {
		t.Error("getpid failed under the filter")
	}
	// Without remap-root setuid is the kernel's: as a user it fails; as
	// root it happens.
	if os.Geteuid() != 0 && (p.SetuidRC != -1 || p.SetuidErr != syscall.EPERM) {
		t.Errorf("setuid(12345) without remap: %d, %v; want EPERM", p.SetuidRC, p.SetuidErr)
	}
	if os.Geteuid() == 0 && (p.SetuidRC != 0 || p.UIDAfter != 12345) {
		t.Errorf("setuid(12345) as root without remap: %d, uid %d; want it done", p.SetuidRC, p.UIDAfter)
	}
	if p.WaitStatus.ExitStatus() != 0 {
		t.Errorf("child ended with %v", p.WaitStatus)
	}
}

// Under remap-root the setuid and chown families return 0 and change
// nothing; privileged calls still fail.
func TestSeccompFilterRemapRootFakes(t *testing.T) {
	path := ownedFile(t)
	uid := os.Getuid()
	p, err := ProbeFilter(true, true, path)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Installed {
		t.Fatalf("filter not installed: %v", p.InstallErr)
	}
	if p.SetuidRC != 0 || p.UIDAfter != uid {
		t.Errorf("setuid(12345) under remap: %d (%v), uid %d; want 0 and uid %d unchanged", p.SetuidRC, p.SetuidErr, p.UIDAfter, uid)
	}
	if p.FchownRC != 0 || p.OwnerAfter != uid {
		t.Errorf("fchown(12345) under remap: %d (%v), owner %d; want 0 and owner %d unchanged", p.FchownRC, p.FchownErr, p.OwnerAfter, uid)
	}
	if p.RebootErr != syscall.EPERM || !p.GetpidOK {
		t.Errorf("under remap: reboot %v (want EPERM), getpid ok %v", p.RebootErr, p.GetpidOK)
	}
}

// A system call of another ABI (whose numbers mean other calls) kills the
// process.
func TestSeccompFilterKillsForeignABI(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("i386 and x32 calls are x86_64's")
	}
	for _, x32 := range []bool{false, true} {
		if !x32 {
			// A kernel without IA32 emulation faults on int 0x80 before
			// any filter sees it.
			if ws := ProbeForeign(false, false); !ws.Exited() || ws.ExitStatus() != 0 {
				t.Logf("no i386 system calls on this kernel (%v): skipped", ws)
				continue
			}
		}
		ws := ProbeForeign(true, x32)
		if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
			t.Errorf("foreign call (x32 %v) under the filter: %v; want killed by SIGSYS", x32, ws)
		}
	}
}

func TestSeccompFilterFits(t *testing.T) {
	for _, remap := range []bool{false, true} {
		if n := FilterLen(remap); n < 10 {
			t.Errorf("filter (remap %v) has %d instructions", remap, n)
		}
	}
	if FilterLen(true) <= FilterLen(false) {
		t.Error("the remap-root filter is not longer than the plain one")
	}
}

// phpc_drop_privileges leaves no capability in any set, and no new
// privileges.
func TestDropPrivileges(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (capabilities to drop)")
	}
	st, err := ProbeDrop(false)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"} {
		if v := statusField(st, f); v != "0000000000000000" {
			t.Errorf("%s = %q after the drop, want 0\n%s", f, v, st)
		}
	}
	if statusField(st, "NoNewPrivs") != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", statusField(st, "NoNewPrivs"))
	}
}

// Root of a user namespace of its own keeps what setns or unshare gave it
// there (every capability, none ambient or inheritable) with
// no_new_privs: its programs gain nothing more.
func TestKeepUserNSPrivileges(t *testing.T) {
	st, err := ProbeDrop(true)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) > 6 && st[:6] == "error:" {
		t.Skipf("no user namespace here: %s", st)
	}
	last, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(last)))
	full := fmt.Sprintf("%016x", uint64(1)<<(n+1)-1)
	want := map[string]string{"CapInh": "0000000000000000", "CapPrm": full, "CapEff": full, "CapBnd": full, "CapAmb": "0000000000000000", "NoNewPrivs": "1"}
	for f, v := range want {
		if got := statusField(st, f); got != v {
			t.Errorf("%s = %q, want %q\n%s", f, got, v, st)
		}
	}
}

// The plugin's connection to the daemon is close-on-exec: no program a
// task executes inherits it.
func TestConnectIsCloseOnExec(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	fd, err := Connect(path)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if flags, err := fcntl(fd, syscall.F_GETFD); err != nil || flags&syscall.FD_CLOEXEC == 0 {
		t.Errorf("daemon connection fd %d is not close-on-exec (%v)", fd, err)
	}
}

// The C message types are pkg/wire's.
func TestMsgTypesMatchWire(t *testing.T) {
	want := map[string]wire.Type{
		"Hello": wire.Hello, "Container": wire.Container, "Rm": wire.Rm, "End": wire.End, "Notes": wire.Notes,
		"OK": wire.OK, "Error": wire.Error, "Progress": wire.Progress,
	}
	for name, c := range MsgTypes() {
		if uint8(want[name]) != c {
			t.Errorf("%s: C %d, Go %d", name, c, want[name])
		}
	}
}

// The container's own processes get the tasks' filter through the spec
// (pkg/oci/seccomp.go): the same calls, with the same errnos, in both
// modes.
func TestSeccompFilterMatchesTheContainers(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the numbers below are x86_64's")
	}
	numbers := map[string]uint32{
		"kexec_load": 246, "kexec_file_load": 320, "init_module": 175, "finit_module": 313, "delete_module": 176,
		"create_module": 174, "query_module": 178, "get_kernel_syms": 177, "open_by_handle_at": 304, "reboot": 169,
		"swapon": 167, "swapoff": 168, "acct": 163, "settimeofday": 164, "clock_settime": 227, "vhangup": 153,
		"lookup_dcookie": 212, "nfsservctl": 180, "iopl": 172, "ioperm": 173, "uselib": 134, "_sysctl": 156,
		"userfaultfd": 323, "keyctl": 250, "add_key": 248, "request_key": 249,
		"io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
		"setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setresuid": 117, "setresgid": 119,
		"setgroups": 116, "setfsuid": 122, "setfsgid": 123, "chown": 92, "lchown": 94, "fchown": 93, "fchownat": 260,
	}
	for _, remap := range []bool{false, true} {
		want := FilterRules(remap)
		got := map[uint32]uint32{}
		s := oci.TaskSeccomp(remap)
		if s.DefaultAction != specs.ActAllow || len(s.Architectures) != 1 || s.Architectures[0] != specs.ArchX86_64 {
			t.Errorf("remap %v: default %s, architectures %v", remap, s.DefaultAction, s.Architectures)
		}
		for _, sc := range s.Syscalls {
			if sc.Action != specs.ActErrno || sc.ErrnoRet == nil {
				t.Errorf("remap %v: %v: action %s", remap, sc.Names, sc.Action)
				continue
			}
			for _, name := range sc.Names {
				nr, ok := numbers[name]
				if !ok {
					t.Errorf("no number for %q: add it here", name)
					continue
				}
				got[nr] = 0x00050000 | uint32(*sc.ErrnoRet) // SECCOMP_RET_ERRNO
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("remap %v: the spec's filter differs from the tasks'\n spec:  %v\n tasks: %v", remap, got, want)
		}
	}
}
