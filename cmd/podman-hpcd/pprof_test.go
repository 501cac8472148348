package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The profiles' socket is root's alone: mode 0600 from its creation, in a
// directory no one else may write, and a connection from another uid is
// closed unanswered.
func TestPprofSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (the socket's directory must be root's)")
	}
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	os.Chmod(filepath.Dir(dir), 0o755) // the test's own, for nobody to reach the socket
	sock := filepath.Join(dir, "pprof.sock")
	ln, err := listenPprof(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go servePprof(ctx, ln, slog.New(slog.NewTextHandler(io.Discard, nil)))
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, %v; want 0600", fi.Mode(), err)
	}
	get := func() (string, error) {
		c := http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			}}}
		r, err := c.Get("http://localhost/debug/pprof/cmdline")
		if err != nil {
			return "", err
		}
		defer r.Body.Close()
		b, err := io.ReadAll(r.Body)
		return string(b), err
	}
	if body, err := get(); err != nil || !strings.Contains(body, os.Args[0]) {
		t.Errorf("root's request: %q, %v", body, err)
	}
	// Another uid: a thread of this test that became nobody (the thread
	// alone: raw setresuid) connects, and gets no answer.
	os.Chmod(sock, 0o666) // past the mode, to reach the peer check
	answered := make(chan string, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		if _, _, e := syscall.RawSyscall(syscall.SYS_SETRESUID, 65534, 65534, 65534); e != 0 {
			answered <- "setresuid: " + e.Error()
			return
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			answered <- "dial: " + err.Error()
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /debug/pprof/cmdline HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(c)
		answered <- string(b)
	}()
	if got := <-answered; got != "" {
		t.Errorf("uid 65534's request was answered: %q", got)
	}

	// A directory others may write is refused.
	open := t.TempDir()
	os.Chmod(open, 0o777)
	if _, err := listenPprof(filepath.Join(open, "p.sock")); err == nil || !strings.Contains(err.Error(), "not root's alone") {
		t.Errorf("world-writable directory: %v", err)
	}
	// Something else at the path is not replaced.
	f := filepath.Join(dir, "file")
	os.WriteFile(f, nil, 0o600)
	if _, err := listenPprof(f); err == nil {
		t.Error("a regular file at the path was replaced")
	}
}
