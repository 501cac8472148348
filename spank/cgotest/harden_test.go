package cgotest

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"syscall"
	"testing"

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
	st, err := ProbeDrop()
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
		"Hello": wire.Hello, "Container": wire.Container, "Rm": wire.Rm, "End": wire.End,
		"OK": wire.OK, "Error": wire.Error, "Progress": wire.Progress,
	}
	for name, c := range MsgTypes() {
		if uint8(want[name]) != c {
			t.Errorf("%s: C %d, Go %d", name, c, want[name])
		}
	}
}
