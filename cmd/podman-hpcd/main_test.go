package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podman-hpc/podman-hpc/internal/server"
)

// startServer serves on a socket made by listen, in a temp dir, until the
// test ends.
func startServer(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, cleanup, err := listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	s := server.New(server.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: version, Unavailable: errors.New("test")})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return sock
}

func TestStatusTalksToServer(t *testing.T) {
	t.Parallel()
	sock := startServer(t)
	var out, errOut bytes.Buffer
	if rc := run([]string{"status", "--socket", sock}, &out, &errOut); rc != 0 {
		t.Fatalf("status rc=%d stderr=%s", rc, errOut.String())
	}
	host, _ := os.Hostname()
	want := "podman-hpcd " + version + " on " + host + ": up "
	if !strings.HasPrefix(out.String(), want) || !strings.Contains(out.String(), "protocol 1") {
		t.Errorf("status printed %q, want prefix %q", out.String(), want)
	}
}

func TestStatusWithoutDaemon(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "none.sock")
	var out, errOut bytes.Buffer
	if rc := run([]string{"status", "--socket", sock}, &out, &errOut); rc != 1 {
		t.Fatalf("rc = %d, want 1", rc)
	}
	if !strings.Contains(errOut.String(), "cannot reach podman-hpcd at "+sock) {
		t.Errorf("stderr %q does not name the socket", errOut.String())
	}
}

func TestListenRefusesNonSocketAndSecondDaemon(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	if _, _, err := listen(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("listen on a regular file: %v", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("listen removed a regular file: %v", err)
	}
	sock := startServer(t)
	if _, _, err := listen(sock); err == nil || !strings.Contains(err.Error(), "already serving") {
		t.Errorf("second listen: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close() // leaves the file, as a killed daemon does
	ln2, cleanup, err := listen(sock)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	defer cleanup()
	fi, _ := os.Stat(sock)
	if fi.Mode().Perm() != 0o666 {
		t.Errorf("socket mode %v, want 0666 (authorisation is by peer credentials)", fi.Mode().Perm())
	}
	_ = ln2
}

func TestUnknownCommand(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if rc := run([]string{"frobnicate"}, &out, &errOut); rc != 2 || !strings.Contains(errOut.String(), `unknown command "frobnicate"`) {
		t.Errorf("rc=%d stderr=%q", rc, errOut.String())
	}
}
