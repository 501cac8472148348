package stepcgroup

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"
)

func pidfdOf(t *testing.T, pid int) *os.File {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Skipf("pidfd_open: %v", err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	t.Cleanup(func() { f.Close() })
	return f
}

// A pid whose process is gone, reused by another (here: this test's own
// pid, with the pidfd of an exited child): nothing is read under it.
func TestProcReusedPidNotFollowed(t *testing.T) {
	child := exec.Command("true")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	fd := pidfdOf(t, child.Process.Pid)
	child.Wait()
	p := Proc{PID: os.Getpid(), FD: fd}
	if _, err := p.read("cgroup"); !errors.Is(err, errGone) {
		t.Fatalf("read under a reused pid: %v, want errGone", err)
	}
	if _, err := OfProcess(p, uint32(os.Getuid()), Mounts{}); !errors.Is(err, errGone) {
		t.Fatalf("OfProcess under a reused pid: %v", err)
	}
	if _, err := Of(p, "1", "0", false, Mounts{}); !errors.Is(err, errGone) {
		t.Fatalf("Of under a reused pid: %v", err)
	}
}

// The process itself is read; another user's is refused.
func TestProcOwnAndOthers(t *testing.T) {
	p := Proc{PID: os.Getpid(), FD: pidfdOf(t, os.Getpid())}
	if _, err := p.read("cgroup"); err != nil {
		t.Fatal(err)
	}
	if _, err := OfProcess(p, uint32(os.Getuid())+1, Mounts{}); !errors.Is(err, errGone) {
		t.Fatalf("another uid's process: %v", err)
	}
	if _, err := OfProcess(p, uint32(os.Getuid()), Mounts{}); err != nil {
		t.Fatalf("the user's own: %v", err)
	}
	if _, err := (Proc{PID: os.Getpid()}).read("cgroup"); !errors.Is(err, errGone) {
		t.Fatalf("without a pidfd: %v", err)
	}
}
