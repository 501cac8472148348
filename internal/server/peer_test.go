package server

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// The peer comes with a pidfd of the connecting process itself, so that a
// pid reused after it exits is never taken for it.
func TestPeerHasPidfd(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := l.AcceptUnix()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	p, err := peerOf(s)
	if err != nil {
		t.Fatal(err)
	}
	if p.pidfd == nil {
		t.Fatal("no pidfd of the peer")
	}
	defer p.pidfd.Close()
	if int(p.PID) != os.Getpid() {
		t.Fatalf("peer pid %d", p.PID)
	}
	if err := unix.PidfdSendSignal(int(p.pidfd.Fd()), 0, nil, 0); err != nil {
		t.Fatalf("the pidfd is not of a live process: %v", err)
	}
}
