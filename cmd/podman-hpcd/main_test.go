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
func startServer(t *testing.T) string { return startServerOf(t, errors.New("test")) }

// startServerOf is startServer of a daemon whose containers are
// unavailable for that reason (nil: available).
func startServerOf(t *testing.T, unavailable error) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, cleanup, err := listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	s := server.New(server.Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: version, Unavailable: unavailable})
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

// status exits 0 only when the node can run containers: a health check
// drains the node on anything else.
func TestStatusTalksToServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		unavailable error
		rc          int
	}{
		{"ready", nil, 0},
		{"cannot run containers", errors.New("this node cannot run containers: POSIX ACLs on state_dir /x: operation not supported; fix: use tmpfs"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := startServerOf(t, tc.unavailable)
			var out, errOut bytes.Buffer
			if rc := run([]string{"status", "--socket", sock}, &out, &errOut); rc != tc.rc {
				t.Fatalf("status rc=%d, want %d; stderr=%s", rc, tc.rc, errOut.String())
			}
			host, _ := os.Hostname()
			want := "podman-hpcd " + version + " on " + host + ": up "
			if !strings.HasPrefix(out.String(), want) || !strings.Contains(out.String(), "protocol 1") {
				t.Errorf("status printed %q, want prefix %q", out.String(), want)
			}
			unavailable := strings.Contains(out.String(), "\nUNAVAILABLE: ")
			if tc.unavailable == nil {
				if unavailable || errOut.Len() > 0 {
					t.Errorf("a ready node's status:\n%s%s", out.String(), errOut.String())
				}
				return
			}
			if !strings.Contains(out.String(), "\nUNAVAILABLE: "+tc.unavailable.Error()+"\n") {
				t.Errorf("status lacks the reason:\n%s", out.String())
			}
			if errOut.String() != "podman-hpcd: "+errCannotRun.Error()+"\n" {
				t.Errorf("stderr %q", errOut.String())
			}
		})
	}
}

// systemd hears READY only from a daemon that can run containers; one that
// cannot gives its reason as the unit's status, on one line.
func TestNotifyState(t *testing.T) {
	t.Parallel()
	if got := notifyState(nil); got != "READY=1\nSTATUS=ready: containers can run" {
		t.Errorf("ready: %q", got)
	}
	got := notifyState(errors.New("this node cannot run containers: overlay:\nno"))
	if got != "STATUS=not ready: this node cannot run containers: overlay: no" {
		t.Errorf("not ready: %q", got)
	}
	if long := notifyState(errors.New(strings.Repeat("x", 5000))); len(long) > 1100 || strings.Contains(long, "READY=1") {
		t.Errorf("a long reason: %d bytes", len(long))
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

// check-config lists every problem, one line each naming the key and the
// fix, and serve refuses to start on the same file, before listening.
func TestCheckConfigAndServeRefuse(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// A state_dir's parents are searchable (check-config wants them so).
	os.Chmod(dir, 0o711)
	os.Chmod(filepath.Dir(dir), 0o711)
	conf := filepath.Join(dir, "c.conf")
	os.WriteFile(conf, []byte("state_dir = "+dir+"/state\ncache_dir = "+dir+"/images\ncache_dirr = /x\nruntime = /no/such/crun\nmetrics_listen = 9464\n"), 0o644)
	var out, errOut bytes.Buffer
	if rc := run([]string{"check-config", "--config", conf}, &out, &errOut); rc != 1 {
		t.Fatalf("check-config rc=%d, want 1; stdout %q", rc, out.String())
	}
	lines := strings.Split(strings.TrimSpace(errOut.String()), "\n")
	for i, want := range []string{
		"podman-hpcd: " + conf + ": the config has errors; fix them",
		conf + `:3: unknown key "cache_dirr" (known: `,
		conf + `:5: metrics_listen "9464": want HOST:PORT such as 127.0.0.1:9464`,
		`runtime "/no/such/crun": not found or not executable; install it, or set runtime = auto`,
	} {
		if i >= len(lines) || !strings.HasPrefix(lines[i], want) {
			t.Errorf("line %d: want %q in\n%s", i+1, want, errOut.String())
		}
	}
	if len(lines) != 4 {
		t.Errorf("%d lines, want 4:\n%s", len(lines), errOut.String())
	}
	sock := filepath.Join(dir, "d.sock")
	var serveErr bytes.Buffer
	if rc := run([]string{"serve", "--config", conf, "--socket", sock}, io.Discard, &serveErr); rc != 1 || serveErr.String() != errOut.String() {
		t.Errorf("serve rc=%d, said %q, want check-config's words", rc, serveErr.String())
	}
	if _, err := os.Stat(sock); err == nil {
		t.Error("serve listened on a bad config")
	}
	// A good file.
	policy := filepath.Join(dir, "policy.json")
	os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644)
	os.WriteFile(conf, []byte("state_dir = "+dir+"/state\ncache_dir = "+dir+"/images\nruntime = sh\npolicy = "+policy+"\nhooks_dirs = "+dir+"/hooks.d\nmetrics_listen = 10.1.2.3:9464\n"), 0o644)
	out.Reset()
	errOut.Reset()
	if rc := run([]string{"check-config", "--config", conf}, &out, &errOut); rc != 0 || out.String() != conf+": ok\n" ||
		!strings.HasPrefix(errOut.String(), "podman-hpcd: warning: metrics_listen 10.1.2.3:9464: not a loopback address") {
		t.Errorf("a good config: rc=%d stdout %q stderr %q", rc, out.String(), errOut.String())
	}
}
