package server

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
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

var discardLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// startServerWith runs a server on a socket in a temp dir until the test
// ends, with setup applied to the server first.
func startServerWith(t *testing.T, setup func(*Server)) string {
	t.Helper()
	sock, ln := listenTemp(t)
	s := New(Options{Log: discardLog, Unavailable: errors.New("test")})
	if setup != nil {
		setup(s)
	}
	runServer(t, s, ln)
	return sock
}

// listenTemp listens on a socket in a temp dir until the test ends.
func listenTemp(t *testing.T) (string, net.Listener) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return sock, ln
}

// runServer serves s on ln until the test ends; serve must then return nil.
// It returns a channel that has serve's result if serve returns early.
func runServer(t *testing.T, s *Server, ln net.Listener) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return done
}

// logTo makes s log into a buffer the test reads.
func logTo(s *Server) *syncBuffer {
	b := &syncBuffer{}
	s.log = slog.New(slog.NewTextHandler(b, nil))
	return b
}

// syncBuffer is a bytes.Buffer for several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// asUID makes the server see every peer as uid (the tests run as root,
// whose connections are not capped).
func asUID(uid uint32) func(*Server) {
	return func(s *Server) {
		s.peerCred = func(c *net.UnixConn) (peer, error) {
			p, err := peerOf(c)
			p.UID = uid
			return p, err
		}
	}
}

// dial connects to sock; the connection is closed when the test ends.
func dial(t *testing.T, sock string) *net.UnixConn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.UnixConn)
}

// hello sends HELLO on c and returns the answer.
func hello(t *testing.T, c net.Conn) (*wire.Message, error) {
	t.Helper()
	if err := wire.Write(c, wire.New(wire.Hello, "client", "test")); err != nil {
		return nil, err
	}
	return wire.Read(c)
}

func TestContainerRequestNeedsRoot(t *testing.T) {
	t.Parallel()
	s := New(Options{Log: discardLog, Unavailable: errors.New("test")})
	req := wire.New(wire.Container, "job", "1", "step", "0", "image", "x")
	reply := s.handle(peer{UID: 1000}, req, s.log)
	msg, _ := reply.Get("message")
	if reply.Type != wire.Error || !strings.Contains(msg, "only slurmstepd") {
		t.Errorf("user request: %+v", reply)
	}
}

// A uid that is not root has at most perUID connections open; the next is
// told why and closed, and a slot frees when one closes. Root is not capped.
func TestConnectionCapPerUID(t *testing.T) {
	t.Parallel()
	var log *syncBuffer
	sock := startServerWith(t, func(s *Server) {
		asUID(1000)(s)
		s.limits.perUID = 3
		log = logTo(s)
	})
	var open []*net.UnixConn
	for i := 0; i < 3; i++ {
		c := dial(t, sock)
		if r, err := hello(t, c); err != nil || r.Type != wire.OK {
			t.Fatalf("connection %d: %+v, %v", i, r, err)
		}
		open = append(open, c)
	}
	c := dial(t, sock)
	r, err := wire.Read(c)
	if err != nil {
		t.Fatalf("4th connection: no reply: %v", err)
	}
	msg, _ := r.Get("message")
	if want := "podman-hpcd: too many connections from uid 1000 (at most 3 at once); close some and retry"; r.Type != wire.Error || msg != want {
		t.Errorf("4th connection: %v %q, want %q", r.Type, msg, want)
	}
	if _, err := wire.Read(c); err == nil {
		t.Error("4th connection still open after the refusal")
	}
	if !strings.Contains(log.String(), "connections refused") {
		t.Errorf("refusal not logged:\n%s", log)
	}
	open[0].Close()
	helloWithin(t, sock, 5*time.Second, "no slot freed after a close")
}

func TestRootConnectionsNotCapped(t *testing.T) {
	t.Parallel()
	sock := startServerWith(t, func(s *Server) { asUID(0)(s); s.limits.perUID = 2 })
	for i := 0; i < 10; i++ {
		if r, err := hello(t, dial(t, sock)); err != nil || r.Type != wire.OK {
			t.Fatalf("root connection %d: %+v, %v", i, r, err)
		}
	}
}

// A peer that is not root and says nothing is told so and closed; root's
// connections (slurmstepd's, idle for a whole step) may wait.
func TestRequestDeadline(t *testing.T) {
	t.Parallel()
	for _, uid := range []uint32{1000, 0} {
		sock := startServerWith(t, func(s *Server) { asUID(uid)(s); s.limits.request = 100 * time.Millisecond })
		c := dial(t, sock)
		if uid == 0 {
			time.Sleep(300 * time.Millisecond)
			if r, err := hello(t, c); err != nil || r.Type != wire.OK {
				t.Errorf("root after 300ms idle: %+v, %v", r, err)
			}
			continue
		}
		start := time.Now()
		r, err := wire.Read(c)
		if err != nil {
			t.Fatalf("silent user: no reply: %v", err)
		}
		if msg, _ := r.Get("message"); r.Type != wire.Error || msg != "podman-hpcd: no request within 100ms; closing the connection" {
			t.Errorf("silent user: %v %q", r.Type, msg)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("silent user closed after %v, want about 100ms", d)
		}
		if _, err := wire.Read(c); err == nil {
			t.Error("silent user's connection still open")
		}
	}
}

// A header with no body behind it is cut off after the body's deadline,
// root's too.
func TestBodyDeadline(t *testing.T) {
	t.Parallel()
	sock := startServerWith(t, func(s *Server) { asUID(0)(s); s.limits.body = 100 * time.Millisecond })
	c := dial(t, sock)
	c.Write([]byte{0, 0x10, 0, 0, wire.Version, byte(wire.Hello), 0, 0, 'k'})
	r, err := wire.Read(c)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if msg, _ := r.Get("message"); r.Type != wire.Error || !strings.Contains(msg, "message body not sent within 100ms") {
		t.Errorf("reply %v %q", r.Type, msg)
	}
}

// failingListener fails the 4 Accepts before each connection with EMFILE,
// as accept(2) does while the daemon is out of file descriptors.
type failingListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.fails.Add(1)%5 != 0 {
		return nil, &net.OpError{Op: "accept", Net: "unix", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// Out of file descriptors, the daemon waits and accepts again: the socket
// stays open, so it must keep serving.
func TestServeSurvivesAcceptErrors(t *testing.T) {
	t.Parallel()
	sock, ln := listenTemp(t)
	s := New(Options{Log: discardLog, Unavailable: errors.New("test")})
	log := logTo(s)
	done := runServer(t, s, &failingListener{Listener: ln})
	for i := 0; i < 3; i++ {
		if r, err := hello(t, dial(t, sock)); err != nil || r.Type != wire.OK {
			t.Fatalf("connection %d, after EMFILE: %+v, %v", i, r, err)
		}
	}
	select {
	case err := <-done:
		t.Fatalf("serve returned: %v", err)
	default:
	}
	if n := strings.Count(log.String(), "accept failed; retrying"); n < 12 {
		t.Errorf("%d accept failures logged, want at least 12:\n%s", n, log)
	}
	if !strings.Contains(log.String(), "too many open files") {
		t.Errorf("log does not name the cause:\n%s", log)
	}
}

// A panic while serving one connection closes that one only, and frees its
// slot under the cap.
func TestHandlerPanicClosesOnlyItsConnection(t *testing.T) {
	t.Parallel()
	var log *syncBuffer
	var panicNext atomic.Bool
	sock := startServerWith(t, func(s *Server) {
		asUID(1000)(s)
		s.limits.perUID = 1
		log = logTo(s)
		s.connHandler = func(ctx context.Context, c *net.UnixConn, p peer) {
			if panicNext.Swap(false) {
				wire.Read(c)
				panic("boom")
			}
			s.handleConn(ctx, c, p)
		}
	})
	panicNext.Store(true)
	if r, err := hello(t, dial(t, sock)); err == nil {
		t.Fatalf("panicking handler answered %+v", r)
	}
	helloWithin(t, sock, 5*time.Second, "server after a handler's panic")
	if !strings.Contains(log.String(), "panic serving a connection; closed it") || !strings.Contains(log.String(), "boom") {
		t.Errorf("panic not logged:\n%s", log)
	}
}

// helloWithin fails the test unless a HELLO on sock is answered OK within d;
// what says what the test waits for.
func helloWithin(t *testing.T, sock string, d time.Duration, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		r, err := hello(t, dial(t, sock))
		if err == nil && r.Type == wire.OK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %+v, %v", what, r, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
