package asuser

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/spawn"
)

// HelperName is the helper's binary, installed next to podman-hpcd; when it
// is missing, podman-hpcd runs itself under that name (reexec, slower to
// start: the daemon's packages' init).
const HelperName = "podman-hpc-asuser"

func init() {
	reexec.Register(HelperName, func() { os.Exit(Serve()) })
}

// helperBinary is the helper's path: the C one next to the daemon, or the
// daemon itself (reexec) when it is missing. A variable for the tests,
// which run each case with either.
var helperBinary = sync.OnceValue(func() string {
	if self, err := os.Executable(); err == nil {
		small := filepath.Join(filepath.Dir(self), HelperName)
		if fi, err := os.Stat(small); err == nil && fi.Mode().IsRegular() {
			return small
		}
	}
	return reexec.Self()
})

// call runs req in a helper as cred. Descriptors the helper sends back are
// returned in order (nil for a missing optional path); with stream, the
// helper's fd 4 is a pipe whose contents are copied to stream. ctx bounds
// the call; the helper is killed when it ends.
func call(ctx context.Context, cred Credential, req request, stream io.Writer) (files []*os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("as uid %d: socketpair: %w", cred.UID, err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "asuser"), os.NewFile(uintptr(fds[1]), "asuser-helper")
	defer theirs.Close()
	conn, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		return nil, fmt.Errorf("as uid %d: %w", cred.UID, err)
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)

	bin := helperBinary()
	if req.Op == opLayout {
		bin = reexec.Self() // only the Go helper writes a tar stream
	}
	cmd := exec.Command(bin)
	// Started as root; it becomes the user itself (helper.go's become),
	// so that the user never owns it while it is dumpable.
	cmd.Args = []string{HelperName, strconv.FormatUint(uint64(cred.UID), 10), strconv.FormatUint(uint64(cred.GID), 10), joinIDs(cred.Groups)}
	// Nothing of the daemon's environment. One P and no collector: the
	// helper lives a millisecond, and starts at every step (a third of
	// its start's cost, measured).
	cmd.Env = []string{"GOMAXPROCS=1", "GOGC=off"}
	cmd.Dir = "/"
	cmd.ExtraFiles = []*os.File{theirs}
	var tail tailBuffer
	cmd.Stderr = &tail
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true}
	// Its stderr is read until it closes: a helper gone but its pipe
	// held elsewhere does not hold the call.
	cmd.WaitDelay = time.Second
	var pr, pw *os.File
	if stream != nil {
		if pr, pw, err = os.Pipe(); err != nil {
			return nil, err
		}
		defer pr.Close()
		cmd.ExtraFiles = append(cmd.ExtraFiles, pw)
	}
	// From the spawner thread: Pdeathsig fires when the daemon dies, not
	// when some thread of it ends.
	if err := spawn.Start(cmd); err != nil {
		if pw != nil {
			pw.Close()
		}
		return nil, fmt.Errorf("as uid %d: start %s: %w", cred.UID, HelperName, err)
	}
	theirs.Close()
	if pw != nil {
		pw.Close()
	}
	ended := false
	defer func() {
		if !ended {
			abandon(cmd)
			closeAll(files)
			files = nil
		}
	}()

	// The stream runs beside the replies; a helper that stops sending
	// for Timeout is killed (ctx bounds the whole). A stream the daemon
	// stops taking (its writer's limit, a full disk) ends the call at
	// once: the helper would wait on the pipe forever.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	copied := make(chan error, 1)
	if stream != nil {
		go func() {
			err := copyIdle(stream, pr, Timeout)
			if err != nil {
				cancel()
			}
			copied <- err
		}()
	}
	stop := context.AfterFunc(ctx, func() { uc.SetReadDeadline(time.Unix(1, 0)); pr.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	msg, err := req.encode()
	if err != nil {
		return nil, err
	}
	if _, err := uc.Write(msg); err != nil {
		return nil, helperError(ctx, cred, req, err, &tail)
	}
	files, err = receive(uc, req)
	var refused *refusal
	if errors.As(err, &refused) {
		// The helper's own answer (permission denied, not a regular
		// file...): the path's error, as the user's open gave it.
		return nil, refused.err
	}
	if stream != nil {
		// The stream's own failure says more than the reply's absence.
		if cerr := <-copied; cerr != nil {
			return nil, helperError(ctx, cred, req, cerr, &tail)
		}
	}
	if err != nil {
		return nil, helperError(ctx, cred, req, err, &tail)
	}
	// Answered: it exits at once, or is killed at the call's end.
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		ended = true
		if err != nil && files != nil {
			closeAll(files)
			return nil, helperError(ctx, cred, req, err, &tail)
		}
		return files, nil
	case <-ctx.Done():
		// Killed, and reaped by the Wait above whenever it ends (a
		// process in a FUSE request outlives SIGKILL until it ends).
		closeAll(files)
		files = nil
		cmd.Process.Kill()
		ended = true
		return nil, helperError(ctx, cred, req, ctx.Err(), &tail)
	}
}

// joinIDs writes group ids comma-separated.
func joinIDs(ids []uint32) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(uint64(id), 10)
	}
	return strings.Join(s, ",")
}

// receive reads the helper's replies: one per want for an open (up to the
// first error), one for anything else.
func receive(uc *net.UnixConn, req request) ([]*os.File, error) {
	n := 1
	if req.Op == opOpen {
		n = len(req.Wants)
	}
	var files []*os.File
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4))
	for i := 0; i < n; i++ {
		m, oobn, flags, _, err := uc.ReadMsgUnix(buf, oob)
		if err != nil {
			closeAll(files)
			return nil, &waitingOn{i, err}
		}
		f, ferr := receivedFile(oob[:oobn], flags)
		var r reply
		if err := json.Unmarshal(buf[:m], &r); err != nil || ferr != nil {
			if f != nil {
				f.Close()
			}
			closeAll(files)
			return nil, fmt.Errorf("a bad reply from the helper: %v", errors.Join(err, ferr))
		}
		if r.Err != "" {
			if f != nil {
				f.Close()
			}
			closeAll(files)
			return nil, &refusal{r.error(req, i)}
		}
		if f == nil && !(r.Missing && req.Op == opOpen && req.Wants[i].Optional) && req.Op != opUnlink && req.Op != opLayout {
			closeAll(files)
			return nil, errors.New("the helper sent no descriptor")
		}
		files = append(files, f)
	}
	return files, nil
}

// receivedFile is the one descriptor a reply may carry, or nil.
func receivedFile(oob []byte, flags int) (*os.File, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var got []int
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, err
		}
		got = append(got, fds...)
	}
	if len(got) != 1 || flags&unix.MSG_CTRUNC != 0 {
		for _, fd := range got {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("%d descriptors in one reply", len(got))
	}
	unix.CloseOnExec(got[0])
	return os.NewFile(uintptr(got[0]), "asuser"), nil
}

// helperError says why a call failed: the context's end, the helper's own
// words, or err.
func helperError(ctx context.Context, cred Credential, req request, err error, tail *tailBuffer) error {
	what := req.Path
	if req.Op == opOpen && len(req.Wants) > 0 {
		what = req.Wants[0].Path
		// The path the helper was on when it stopped answering.
		var w *waitingOn
		if errors.As(err, &w) && w.i < len(req.Wants) {
			what = req.Wants[w.i].Path
		}
	}
	var bw *budgetError
	if errors.As(err, &bw) {
		return bw.err
	}
	if ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("%s: no answer after %s: a file system that does not answer? (read as uid %d)", what, Timeout, cred.UID)
	}
	if s := tail.String(); s != "" {
		return fmt.Errorf("%s: as uid %d: %s", what, cred.UID, lastLine(s))
	}
	return fmt.Errorf("%s: as uid %d: %w", what, cred.UID, err)
}

// copyIdle copies r to w; a read that waits idle for longer fails.
// An error of w's is returned wrapped in budgetError, as it is.
func copyIdle(w io.Writer, r *os.File, idle time.Duration) error {
	buf := make([]byte, 256<<10)
	for {
		r.SetReadDeadline(time.Now().Add(idle))
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return &budgetError{werr}
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// waitingOn is a reply that did not come: the helper was on want i.
type waitingOn struct {
	i   int
	err error
}

func (e *waitingOn) Error() string { return e.err.Error() }
func (e *waitingOn) Unwrap() error { return e.err }

// refusal is an error the helper answered with.
type refusal struct{ err error }

func (e *refusal) Error() string { return e.err.Error() }

// budgetError is the stream's writer's own error (a size limit, a full
// disk), passed on as it is.
type budgetError struct{ err error }

func (e *budgetError) Error() string { return e.err.Error() }
func (e *budgetError) Unwrap() error { return e.err }

// abandon kills a helper that did not finish and reaps it in the
// background: a process blocked in a file system's request (a FUSE mount
// that never answers) may outlive SIGKILL until the request ends, and no
// thread of the daemon waits for it meanwhile.
func abandon(cmd *exec.Cmd) {
	cmd.Process.Kill()
	pid := cmd.Process.Pid
	cmd.Process.Release()
	reaper.add(pid)
}

var reaper = &reapList{}

// reapList reaps abandoned helpers, polling once a second while any is
// left.
type reapList struct {
	mu   sync.Mutex
	pids []int
}

func (r *reapList) add(pid int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pids = append(r.pids, pid)
	if len(r.pids) == 1 {
		go r.loop()
	}
}

func (r *reapList) loop() {
	for {
		r.mu.Lock()
		left := r.pids[:0]
		for _, pid := range r.pids {
			var ws unix.WaitStatus
			if got, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); got == 0 && err == nil {
				unix.Kill(pid, unix.SIGKILL)
				left = append(left, pid)
			}
		}
		r.pids = left
		n := len(left)
		r.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(time.Second)
	}
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 4<<10 {
		t.b = append(t.b[:0], t.b[len(t.b)-4<<10:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
