package squash

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"
)

// The daemon is root; a path a user names must be read with that user's
// permissions, or any user could make root read files they cannot. A
// short-lived helper (this binary, re-executed through reexec) starts with
// the user's uid, gid and groups and either opens a file and passes the
// descriptor back, or writes an OCI layout directory to its stdout as a
// tar stream. What the kernel or containers/image then parse is only ever
// our own root-owned copy.

const readerHelper = "podman-hpc-squash-read"

// Exit codes of the helper, so the parent can tell causes apart.
const (
	helperFailed      = 1
	helperPermission  = 2
	helperNotFound    = 3
	helperNotRegular  = 4
	helperBadArgument = 5
)

func init() {
	reexec.Register(readerHelper, readerMain)
}

// readerMain is the helper: argv = [readerHelper, "open"|"tar", PATH].
func readerMain() {
	if len(os.Args) != 3 {
		os.Exit(helperBadArgument)
	}
	var err error
	switch os.Args[1] {
	case "open":
		err = sendFile(os.NewFile(3, "socket"), os.Args[2])
	case "tar":
		err = writeLayoutTar(os.Stdout, os.Args[2])
	default:
		os.Exit(helperBadArgument)
	}
	if err == nil {
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, err)
	switch {
	case errors.Is(err, fs.ErrPermission):
		os.Exit(helperPermission)
	case errors.Is(err, fs.ErrNotExist):
		os.Exit(helperNotFound)
	case errors.Is(err, errNotRegular):
		os.Exit(helperNotRegular)
	}
	os.Exit(helperFailed)
}

var errNotRegular = errors.New("not a regular file")

// openRegular opens p read-only without blocking on a FIFO or taking a
// controlling tty, and refuses anything but a regular file.
func openRegular(p string) (*os.File, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: %w", p, errNotRegular)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func sendFile(sock *os.File, p string) error {
	f, err := openRegular(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Sendmsg(int(sock.Fd()), []byte{'F'}, unix.UnixRights(int(f.Fd())), nil, 0)
}

// writeLayoutTar writes the OCI layout at dir as a tar stream of regular
// files only (index.json, oci-layout, blobs/ALG/HEX), following symlinks
// with the user's permissions. Anything else in the directory is skipped.
func writeLayoutTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	add := func(rel string) error {
		f, err := openRegular(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: 0o600, Size: fi.Size(), ModTime: fi.ModTime()}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		// Exactly Size bytes: the user may grow the file meanwhile.
		_, err = io.Copy(tw, io.NewSectionReader(f, 0, fi.Size()))
		return err
	}
	for _, rel := range []string{"oci-layout", "index.json"} {
		if err := add(rel); err != nil {
			return err
		}
	}
	algs, err := os.ReadDir(filepath.Join(dir, "blobs"))
	if err != nil {
		return err
	}
	for _, a := range algs {
		blobs, err := os.ReadDir(filepath.Join(dir, "blobs", a.Name()))
		if err != nil {
			continue
		}
		for _, b := range blobs {
			if err := add(filepath.Join("blobs", a.Name(), b.Name())); err != nil && !errors.Is(err, errNotRegular) {
				return err
			}
		}
	}
	return tw.Close()
}

// credential is who a path is read as.
type credential struct {
	uid, gid uint32
	groups   []uint32
}

func (o PullOptions) credential() credential {
	c := credential{uid: o.UID, gid: o.GID, groups: o.Groups}
	if c.groups == nil && o.UID != 0 {
		// Best effort: /etc/group only without cgo. Slurm knows the job's
		// groups; the daemon should pass them in PullOptions.Groups.
		if u, err := user.LookupId(strconv.FormatUint(uint64(o.UID), 10)); err == nil {
			if ids, err := u.GroupIds(); err == nil {
				for _, s := range ids {
					if g, err := strconv.ParseUint(s, 10, 32); err == nil {
						c.groups = append(c.groups, uint32(g))
					}
				}
			}
		}
	}
	return c
}

// helperCommand prepares the helper to run as cred, or fails cleanly when
// the program did not call reexec.Init() (the library would panic).
func helperCommand(ctx context.Context, cred credential, args ...string) (cmd *exec.Cmd, err error) {
	defer func() {
		if r := recover(); r != nil {
			cmd, err = nil, errNoReexec
		}
	}()
	cmd = reexec.CommandContext(ctx, append([]string{readerHelper}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: cred.uid, Gid: cred.gid, Groups: cred.groups},
		Pdeathsig:  syscall.SIGKILL,
	}
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	cmd.Dir = "/"
	cmd.WaitDelay = 5 * time.Second
	return cmd, nil
}

var errNoReexec = errors.New("reexec.Init() was not called at the start of main(): the helper processes cannot run")

// helperError turns the helper's exit into an error that reads as the
// helper's message and wraps the cause.
func helperError(err error, stderr string, p string) error {
	msg := strings.TrimSpace(stderr)
	if msg == "" {
		msg = fmt.Sprintf("reading %s as the user: %v", p, err)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		switch ee.ExitCode() {
		case helperPermission:
			return &causeError{msg, ErrPermission}
		case helperNotFound:
			return &causeError{msg, fs.ErrNotExist}
		case helperNotRegular:
			return &causeError{msg, errNotRegular}
		}
	}
	return errors.New(msg)
}

// causeError reads as msg and matches cause with errors.Is.
type causeError struct {
	msg   string
	cause error
}

func (e *causeError) Error() string { return e.msg }
func (e *causeError) Unwrap() error { return e.cause }

// openAsUser opens the regular file p with cred's permissions and returns
// it; the caller closes it. Root's requests are opened directly.
func openAsUser(ctx context.Context, p string, cred credential) (*os.File, error) {
	if cred.uid == 0 {
		return openRegular(p)
	}
	// The helper dies with the thread that started it (Pdeathsig), and Go
	// ends a thread when a goroutine locked to it returns, as the daemon's
	// as-user opens do on purpose: an unlocked goroutine's thread may be
	// taken by one of those and end under a running helper. Locked here,
	// the starting thread lives until the helper is reaped.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "helper"), os.NewFile(uintptr(fds[1]), "helper")
	defer ours.Close()
	cmd, err := helperCommand(ctx, cred, "open", p)
	if err != nil {
		theirs.Close()
		return nil, err
	}
	var stderr tailBuffer
	cmd.Stderr = &stderr
	cmd.ExtraFiles = []*os.File{theirs}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return nil, err
	}
	conn, err := net.FileConn(ours)
	if err != nil {
		_ = cmd.Wait()
		return nil, err
	}
	defer conn.Close()
	uc := conn.(*net.UnixConn)
	if dl, ok := ctx.Deadline(); ok {
		_ = uc.SetReadDeadline(dl)
	}
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, rerr := uc.ReadMsgUnix(buf, oob)
	if werr := cmd.Wait(); werr != nil {
		return nil, helperError(werr, stderr.String(), p)
	}
	if rerr != nil {
		return nil, rerr
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("reading %s as the user: no descriptor from the helper", p)
	}
	got, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(got) != 1 {
		return nil, fmt.Errorf("reading %s as the user: no descriptor from the helper", p)
	}
	unix.CloseOnExec(got[0])
	return os.NewFile(uintptr(got[0]), p), nil
}

// tarLayoutAsUser writes the OCI layout at dir, read with cred's
// permissions, into the tar file out (created 0600); a layout of more
// than limit (> 0) bytes is refused with ErrTooLarge.
func tarLayoutAsUser(ctx context.Context, dir string, cred credential, out string, limit int64) error {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if cred.uid == 0 {
		if err := writeLayoutTar(f, dir); err != nil {
			return err
		}
		return f.Close()
	}
	// The helper dies with the thread that started it (Pdeathsig), and Go
	// ends a thread when a goroutine locked to it returns, as the daemon's
	// as-user opens do on purpose: an unlocked goroutine's thread may be
	// taken by one of those and end under a running helper. Locked here,
	// the starting thread lives until the helper is reaped.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd, err := helperCommand(ctx, cred, "tar", dir)
	if err != nil {
		return err
	}
	var stderr tailBuffer
	// Through a pipe, counted here: the helper runs as the user, who may
	// make it write anything.
	budget := &sizeBudget{limit: limit}
	cmd.Stdout, cmd.Stderr = &budgetWriter{w: f, b: budget}, &stderr
	if err := cmd.Run(); err != nil {
		if limit > 0 && budget.used.Load() > limit {
			return tooLarge("is", limit)
		}
		return helperError(err, stderr.String(), dir)
	}
	return f.Close()
}
