package cgotest

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

var sample = []Field{{"job", "7"}, {"mount", "/a:/b:ro"}, {"mount", "/c:/d"}, {"empty", ""}}

func toWire(fs []Field) []wire.Field {
	var out []wire.Field
	for _, f := range fs {
		out = append(out, wire.Field{Key: f.Key, Value: f.Value})
	}
	return out
}

// The C encoder and the Go decoder agree, and the other way round.
func TestProtoCAndGoAgree(t *testing.T) {
	t.Parallel()
	frame, err := EncodeC(uint8(wire.Container), sample)
	if err != nil {
		t.Fatal(err)
	}
	m, err := wire.Read(bytes.NewReader(frame))
	if err != nil {
		t.Fatalf("Go cannot read the C frame: %v", err)
	}
	if m.Type != wire.Container || !reflect.DeepEqual(m.Fields, toWire(sample)) {
		t.Errorf("Go read %+v", m)
	}
	goFrame, err := wire.New(wire.Container, "job", "7", "mount", "/a:/b:ro", "mount", "/c:/d", "empty", "").Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(goFrame, frame) {
		t.Errorf("encodings differ:\nC  %q\nGo %q", frame, goFrame)
	}
	typ, fields, err := DecodeC(goFrame)
	if err != nil || typ != uint8(wire.Container) || !reflect.DeepEqual(fields, sample) {
		t.Errorf("C read %d %+v %v", typ, fields, err)
	}
}

func TestProtoCRejects(t *testing.T) {
	t.Parallel()
	for name, frame := range map[string][]byte{
		"version":      {0, 0, 0, 4, 2, 1, 0, 0},
		"too large":    {0x7f, 0, 0, 4, 1, 1, 0, 0},
		"no final NUL": {0, 0, 0, 7, 1, 1, 0, 0, 'k', 0, 'v'},
		"odd fields":   {0, 0, 0, 6, 1, 1, 0, 0, 'k', 0},
		"empty key":    {0, 0, 0, 7, 1, 1, 0, 0, 0, 'v', 0},
	} {
		if _, _, err := DecodeC(frame); err == nil {
			t.Errorf("%s: C decoder accepted %q", name, frame)
		}
	}
	if _, err := EncodeC(1, []Field{{"", "v"}}); err == nil {
		t.Error("C encoder accepted an empty key")
	}
}

func socketpair(t *testing.T) (int, int) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fds[0]); syscall.Close(fds[1]) })
	return fds[0], fds[1]
}

// The client receives a frame with the file descriptors sent beside it, as the
// daemon sends the container's namespaces.
func TestClientRecvWithFDs(t *testing.T) {
	t.Parallel()
	a, b := socketpair(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	frame, _ := wire.New(wire.OK, "pid", "123").Marshal()
	rights := syscall.UnixRights(int(f.Fd()), int(f.Fd()))
	// Split the frame in two writes to exercise partial reads.
	if err := syscall.Sendmsg(a, frame[:5], rights, nil, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := syscall.Write(a, frame[5:]); err != nil {
		t.Fatal(err)
	}
	typ, fields, fds, err := RecvC(b, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if typ != uint8(wire.OK) || !reflect.DeepEqual(fields, []Field{{"pid", "123"}}) || len(fds) != 2 {
		t.Errorf("got %d %+v fds=%v", typ, fields, fds)
	}
	for _, fd := range fds {
		flags, err := fcntl(fd, syscall.F_GETFD)
		if err != nil || flags&syscall.FD_CLOEXEC == 0 {
			t.Errorf("passed fd %d is not close-on-exec (%v)", fd, err)
		}
		syscall.Close(fd)
	}
}

func fcntl(fd, cmd int) (int, error) {
	r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

func TestClientSendRead(t *testing.T) {
	t.Parallel()
	a, b := socketpair(t)
	if err := SendC(a, uint8(wire.Hello), []Field{{"client", "spank"}}); err != nil {
		t.Fatal(err)
	}
	m, err := wire.Read(os.NewFile(uintptr(b), "b"))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := m.Get("client"); m.Type != wire.Hello || v != "spank" {
		t.Errorf("daemon side read %+v", m)
	}
}

func TestClientRecvTimeoutAndHangup(t *testing.T) {
	t.Parallel()
	a, b := socketpair(t)
	if _, _, _, err := RecvC(b, 50); !errors.Is(err, syscall.ETIMEDOUT) {
		t.Errorf("silent peer: err = %v, want ETIMEDOUT", err)
	}
	syscall.Write(a, []byte{0, 0, 0})
	syscall.Shutdown(a, syscall.SHUT_WR)
	if _, _, _, err := RecvC(b, 1000); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("peer hung up mid-frame: err = %v, want ECONNRESET", err)
	}
}

func TestConnectErrorNamesSocketAndFix(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "missing.sock")
	_, err := Connect(path)
	if err == nil {
		t.Fatal("connected to a socket that does not exist")
	}
	for _, want := range []string{path, "No such file", "podman-hpcd"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
