package asuser

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

const nobody = 65534

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (it becomes another user)")
	}
}

// TestMain runs every test twice: with the Go helper (the test binary
// serves as it, reexec, as the daemon does when the C one is missing), then
// with the C helper (cmd/podman-hpc-asuser), built here as the Makefile
// builds it.
func TestMain(m *testing.M) {
	if reexec.Init() {
		return
	}
	code := m.Run()
	if code != 0 {
		os.Exit(code)
	}
	helper, cleanup, err := buildCHelper()
	if err != nil {
		fmt.Fprintln(os.Stderr, "the C helper:", err)
		os.Exit(1)
	}
	defer cleanup()
	fmt.Fprintln(os.Stderr, "again, with the C helper", helper)
	helperBinary = func() string { return helper }
	code = m.Run()
	cleanup()
	os.Exit(code)
}

// buildCHelper compiles cmd/podman-hpc-asuser into a directory any user
// may reach (the tests run it as nobody).
func buildCHelper() (string, func(), error) {
	dir, err := os.MkdirTemp("", "asuser-c.")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	os.Chmod(dir, 0o755)
	cc := os.Getenv("CC")
	if cc == "" {
		cc = "gcc"
	}
	bin := filepath.Join(dir, HelperName)
	out, err := exec.Command(cc, "-O2", "-Wall", "-Wextra", "-Werror", "-D_FORTIFY_SOURCE=2", "-static", "-o", bin, "../../cmd/podman-hpc-asuser/asuser.c").CombinedOutput()
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("%s: %v: %s", cc, err, out)
	}
	return bin, cleanup, nil
}

// The helper runs as the user entirely: ids, groups, no capabilities, no
// new privileges, not dumpable. Seen while it waits on a FIFO.
func TestHelperIsTheUser(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	fifo := filepath.Join(dir, "fifo")
	unix.Mkfifo(fifo, 0o666)
	done := make(chan error, 1)
	go func() {
		f, err := openAll(Credential{UID: nobody, GID: nobody, Groups: []uint32{12345}}, []string{fifo}, unix.O_RDONLY, 0)
		if err == nil {
			f[0].Close()
		}
		done <- err
	}()
	// Until the helper has dropped everything and waits on the FIFO: a
	// look between the fork's setgroups and its setuid would see root.
	var status string
	for i := 0; i < 200 && !strings.Contains(status, "NoNewPrivs:\t1"); i++ {
		time.Sleep(10 * time.Millisecond)
		status = childStatus(t, "Groups:\t12345")
	}
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0) // lets the helper go on
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Uid:\t65534\t65534\t65534\t65534", "Gid:\t65534\t65534\t65534\t65534", "Groups:\t12345", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000", "NoNewPrivs:\t1"} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q:\n%s", want, status)
		}
	}
}

// childStatus is /proc/PID/status of a child of this process that holds
// has, or "".
func childStatus(t *testing.T, has string) string {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", os.Getpid()))
	for _, c := range tasks {
		b, _ := os.ReadFile(c)
		for _, pid := range strings.Fields(string(b)) {
			st, _ := os.ReadFile("/proc/" + pid + "/status")
			if strings.Contains(string(st), has) {
				return string(st)
			}
		}
	}
	return ""
}

// A directory the user may not pass keeps its files out of reach; what
// the user may reach opens, and the descriptor is usable by root after.
func TestOpenWithTheUsersPermissions(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	private := filepath.Join(dir, "private")
	os.Mkdir(private, 0o700)
	os.WriteFile(filepath.Join(private, "secret"), []byte("s"), 0o644)
	os.WriteFile(filepath.Join(dir, "open"), []byte("o"), 0o644)
	nob := Credential{UID: nobody, GID: nobody}
	_, err := openAll(nob, []string{filepath.Join(dir, "open"), filepath.Join(private, "secret")}, unix.O_RDONLY, 0)
	var pe *os.PathError
	if !errors.As(err, &pe) || pe.Path != filepath.Join(private, "secret") || !errors.Is(err, fs.ErrPermission) {
		t.Fatalf("got %v, want permission denied on the secret", err)
	}
	files, err := openAll(nob, []string{filepath.Join(dir, "open")}, unix.O_PATH, 0)
	if err != nil || len(files) != 1 {
		t.Fatalf("open: %v", err)
	}
	defer files[0].Close()
	if fi, err := files[0].Stat(); err != nil || fi.Size() != 1 {
		t.Errorf("stat of the opened file: %v %v", fi, err)
	}
	if _, err := openAll(nob, []string{filepath.Join(dir, "missing")}, unix.O_PATH, 0); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing path: %v, want not found", err)
	}
	// The daemon's other threads keep root's view, and root may open it all.
	if _, err := os.Stat(filepath.Join(private, "secret")); err != nil {
		t.Errorf("root lost access: %v", err)
	}
	if f, err := openAll(Credential{}, []string{filepath.Join(private, "secret")}, unix.O_RDONLY, 0); err != nil {
		t.Errorf("as root: %v", err)
	} else {
		f[0].Close()
	}
	// Created as the user: theirs.
	made := filepath.Join(dir, "made")
	os.Chmod(dir, 0o777)
	f, err := openAll(nob, []string{made}, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f[0].Close()
	var st unix.Stat_t
	if err := unix.Stat(made, &st); err != nil || st.Uid != nobody || st.Gid != nobody {
		t.Errorf("created file owned by %d:%d, want nobody's", st.Uid, st.Gid)
	}
}

// No magic link is followed, by any spelling of the daemon's own
// descriptors, root, cwd or the helper's: the class of paths that reached
// another user's image through the daemon's file descriptors.
func TestNoMagicLinks(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o700) // the daemon's: nobody may pass
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("s"), 0o644)
	held, err := os.Open(secret) // a descriptor of the daemon's
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	fd := int(held.Fd())
	pid := os.Getpid()
	for _, cred := range []Credential{{UID: nobody, GID: nobody}, {}} {
		for _, p := range []string{
			fmt.Sprintf("/proc/self/fd/%d", fd),
			fmt.Sprintf("/proc/thread-self/fd/%d", fd),
			fmt.Sprintf("/proc/%d/fd/%d", pid, fd),
			fmt.Sprintf("/dev/fd/%d", fd),
			fmt.Sprintf("/proc/%d/root%s", pid, secret),
			fmt.Sprintf("/proc/%d/cwd", pid),
			"/proc/self/root" + secret,
			"/proc/self/fd/3",
		} {
			f, err := openAll(cred, []string{p}, unix.O_PATH, 0)
			if err == nil {
				f[0].Close()
				t.Errorf("uid %d: %s opened", cred.UID, p)
			}
		}
	}
}

// A FIFO, a socket or a device where a file is wanted is refused at once,
// never waited on; creating a file over a FIFO does not wait for a reader.
func TestOnlyRegularFiles(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o777)
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o666); err != nil {
		t.Fatal(err)
	}
	nob := Credential{UID: nobody, GID: nobody}
	for _, p := range []string{fifo, "/dev/null", dir} {
		if f, err := OpenRegular(nob, p); !errors.Is(err, ErrNotRegular) {
			if f != nil {
				f.Close()
			}
			t.Errorf("%s: %v, want not a regular file", p, err)
		}
	}
	w := Want{Path: fifo, Flags: unix.O_WRONLY | unix.O_CREAT | unix.O_NONBLOCK | unix.O_NOCTTY, Mode: 0o644, Regular: true}
	if f, err := OpenFiles(nob, []Want{w}); err == nil {
		f[0].Close()
		t.Error("a FIFO opened for writing")
	}
}

// A path whose open never ends (a FIFO opened without O_NONBLOCK, as a
// FUSE server that never answers would) fails after the timeout, with the
// reason; the helper is killed and the daemon goes on.
func TestHungPathTimesOut(t *testing.T) {
	requireRoot(t)
	old := Timeout
	Timeout = 300 * time.Millisecond
	defer func() { Timeout = old }()
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	fifo := filepath.Join(dir, "fifo")
	unix.Mkfifo(fifo, 0o666)
	start := time.Now()
	_, err := openAll(Credential{UID: nobody, GID: nobody}, []string{fifo}, unix.O_RDONLY, 0)
	if err == nil || !strings.Contains(err.Error(), "no answer after") {
		t.Fatalf("got %v, want the timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	// Behind a path that opened, the error names the one that hung.
	_, err = openAll(Credential{UID: nobody, GID: nobody}, []string{dir, fifo}, unix.O_RDONLY, 0)
	if err == nil || !strings.HasPrefix(err.Error(), fifo+": no answer after") {
		t.Errorf("got %v, want the timeout named after %s", err, fifo)
	}
}

// Unlink and Dial run as the user too.
func TestUnlinkAndDialAsTheUser(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	f := filepath.Join(dir, "f")
	os.WriteFile(f, nil, 0o644)
	nob := Credential{UID: nobody, GID: nobody}
	if err := Unlink(nob, f); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("unlink in root's directory: %v, want permission denied", err)
	}
	if err := Unlink(Credential{}, f); err != nil {
		t.Errorf("unlink as root: %v", err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
		}
	}()
	os.Chmod(sock, 0o700)
	if _, err := Dial(nob, sock); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("dial a root-only socket: %v, want permission denied", err)
	}
	os.Chmod(sock, 0o777)
	c, err := Dial(nob, sock)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	c.Close()
}

// limitedWriter fails once more than n bytes were written to it.
type limitedWriter struct{ n int }

var errFull = errors.New("the writer is full")

func (w *limitedWriter) Write(p []byte) (int, error) {
	if w.n -= len(p); w.n < 0 {
		return 0, errFull
	}
	return len(p), nil
}

// A layout stream the daemon stops taking (a size limit, a full disk)
// ends the call at once with the writer's error, and the helper, blocked
// on the pipe, is killed: it once waited there forever, and the step with
// it.
func TestTarLayoutStopsWithItsWriter(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644)
	os.WriteFile(filepath.Join(dir, "index.json"), []byte(`{}`), 0o644)
	os.MkdirAll(filepath.Join(dir, "blobs", "sha256"), 0o755)
	big := filepath.Join(dir, "blobs", "sha256", strings.Repeat("1", 64))
	f, _ := os.Create(big)
	f.Truncate(64 << 20)
	f.Close()
	os.Chmod(big, 0o644)
	start := time.Now()
	err := TarLayout(context.Background(), Credential{UID: nobody, GID: nobody}, dir, &limitedWriter{n: 1 << 20})
	if !errors.Is(err, errFull) {
		t.Fatalf("got %v, want the writer's error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
	var w strings.Builder
	if err := TarLayout(context.Background(), Credential{UID: nobody, GID: nobody}, dir, &w); err != nil || w.Len() < 64<<20 {
		t.Errorf("the whole layout: %d bytes, %v", w.Len(), err)
	}
}

// openAll opens each path as cred with the same flags and mode.
func openAll(cred Credential, paths []string, flags int, mode uint32) ([]*os.File, error) {
	wants := make([]Want, len(paths))
	for i, p := range paths {
		wants[i] = Want{Path: p, Flags: flags, Mode: mode}
	}
	return OpenFiles(cred, wants)
}

// The helper starts as root and becomes the user itself: a process exec'd
// as the user is the user's, and dumpable, until it says otherwise, and in
// that window the user could take its descriptors (pidfd_getfd), the
// daemon's socket among them (outside review, 2026-12-06). A wrapper in
// the helper's place records who it started as.
func TestHelperStartsAsRootAndBecomesTheUser(t *testing.T) {
	requireRoot(t)
	real := helperBinary()
	if real == reexec.Self() {
		exe, err := os.Executable()
		if err != nil {
			t.Fatal(err)
		}
		real = exe
	}
	dir := t.TempDir()
	os.Chmod(filepath.Dir(dir), 0o755)
	os.Chmod(dir, 0o777) // so that a helper started as the user records too
	record := filepath.Join(dir, "started-as")
	wrapper := filepath.Join(dir, "wrapper")
	script := fmt.Sprintf("#!/bin/bash\nid -u >%s\nexec -a %s %s \"$@\"\n", record, HelperName, real)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	saved := helperBinary
	helperBinary = func() string { return wrapper }
	defer func() { helperBinary = saved }()
	files, err := OpenFiles(Credential{UID: nobody, GID: nobody, Groups: []uint32{12345}}, []Want{{Path: dir, Flags: unix.O_PATH}})
	if err != nil {
		t.Fatal(err)
	}
	closeAll(files)
	started, err := os.ReadFile(record)
	if err != nil || strings.TrimSpace(string(started)) != "0" {
		t.Fatalf("the helper started as uid %q (%v), want root, who drops to the user itself", started, err)
	}
}

// Credentials that do not parse are refused before anything changes, and a
// helper not started as root becomes no one else.
func TestHelperRefusesToBecomeAnotherUserUnlessRoot(t *testing.T) {
	if os.Getuid() != 0 {
		if err := become(strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid()), ""); err != nil {
			t.Errorf("become oneself: %v", err)
		}
		if err := become("0", "0", ""); err == nil {
			t.Error("a helper not started as root became root")
		}
	}
	for _, bad := range [][3]string{{"x", "1", ""}, {"1", "-1", ""}, {"1", "1", "2,x"}, {"4294967295", "1", ""}} {
		if err := become(bad[0], bad[1], bad[2]); err == nil {
			t.Errorf("become(%q) accepted", bad)
		}
	}
}
