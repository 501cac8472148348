package asuser

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// The helper's side: podman-hpc-asuser (cmd/podman-hpc-asuser), or the
// daemon's binary run under that name. It was started as root, as
// "podman-hpc-asuser UID GID GROUPS", fd 3 its socket to the daemon and,
// for a layout, fd 4 the pipe to write the tar stream to; it becomes the
// user itself (become), so that the user never owns it while it is
// dumpable (see the C helper's comment).

const (
	helperSock   = 3
	helperStream = 4
)

// Serve runs the helper: one request, its replies, then exit. It returns
// the exit code.
func Serve() int {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: podman-hpc-asuser UID GID GROUPS (run by podman-hpcd)")
		return 1
	}
	daemon := os.Getppid()
	if err := become(os.Args[1], os.Args[2], os.Args[3]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The uid change cleared the parent-death signal the daemon set:
	// set it again, and go if the daemon went meanwhile.
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	if os.Getppid() != daemon {
		return 1
	}
	// Not dumpable (the uid change made it so; this says it again for
	// root's own helper and a node with fs.suid_dumpable set): the user
	// may not ptrace it or take its descriptors.
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
	if err := holdsNothing(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	buf := make([]byte, 1<<20)
	n, _, _, _, err := unix.Recvmsg(helperSock, buf, nil, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, "read the request:", err)
		return 1
	}
	req, err := decodeRequest(buf[:n])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad request:", err)
		return 1
	}
	if err := serve(req); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// become takes the user's credentials for good, on every thread (Go's
// syscall package): groups, gid, uid (real, effective and saved).
func become(uidS, gidS, groupsS string) error {
	uid, err1 := strconv.ParseUint(uidS, 10, 32)
	gid, err2 := strconv.ParseUint(gidS, 10, 32)
	if err := errors.Join(err1, err2); err != nil || uid > 0xfffffffe || gid > 0xfffffffe {
		return fmt.Errorf("bad credentials %q %q", uidS, gidS)
	}
	var groups []int
	if groupsS != "" {
		for _, g := range strings.Split(groupsS, ",") {
			v, err := strconv.ParseUint(g, 10, 32)
			if err != nil || v > 0xfffffffe {
				return fmt.Errorf("bad groups %q", groupsS)
			}
			groups = append(groups, int(v))
		}
	}
	if os.Getuid() != 0 || os.Geteuid() != 0 {
		if os.Getuid() == int(uid) && os.Geteuid() == int(uid) && os.Getgid() == int(gid) {
			return nil // already the user: a test's own
		}
		return fmt.Errorf("started as uid %d, not root: cannot become uid %d", os.Getuid(), uid)
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("become the user: setgroups: %w", err)
	}
	if err := syscall.Setresgid(int(gid), int(gid), int(gid)); err != nil {
		return fmt.Errorf("become the user: setresgid: %w", err)
	}
	if err := syscall.Setresuid(int(uid), int(uid), int(uid)); err != nil {
		return fmt.Errorf("become the user: setresuid: %w", err)
	}
	r, e, s := unix.Getresuid()
	rg, eg, sg := unix.Getresgid()
	if r != int(uid) || e != int(uid) || s != int(uid) || rg != int(gid) || eg != int(gid) || sg != int(gid) {
		return errors.New("the credentials did not change")
	}
	return nil
}

// holdsNothing checks that a helper of a non-root user has no capability
// (exec after setuid from root drops them all).
func holdsNothing() error {
	if os.Getuid() == 0 {
		return nil
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	for _, d := range data {
		if d.Effective|d.Permitted|d.Inheritable != 0 {
			return fmt.Errorf("uid %d holds capabilities (effective %#x, permitted %#x): refusing to run", os.Getuid(), d.Effective, d.Permitted)
		}
	}
	return nil
}

func serve(req request) error {
	switch req.Op {
	case opOpen:
		for _, w := range req.Wants {
			fd, err := openWant(w)
			switch {
			case w.Optional && errors.Is(err, unix.ENOENT):
				if err := send(reply{Missing: true}, -1); err != nil {
					return err
				}
				continue
			case err != nil:
				return send(errorReply(err), -1)
			}
			err = send(reply{}, fd)
			unix.Close(fd)
			if err != nil {
				return err
			}
		}
		return nil
	case opUnlink:
		if err := checkPath(req.Path); err != nil {
			return send(errorReply(err), -1)
		}
		if err := unix.Unlink(req.Path); err != nil {
			return send(errorReply(err), -1)
		}
		return send(reply{}, -1)
	case opDial:
		fd, err := dial(req.Path)
		if err != nil {
			return send(errorReply(err), -1)
		}
		defer unix.Close(fd)
		return send(reply{}, fd)
	case opLayout:
		out := os.NewFile(helperStream, "stream")
		err := writeLayoutTar(out, req.Path)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return send(errorReply(err), -1)
		}
		return send(reply{}, -1)
	}
	return fmt.Errorf("unknown request %q", req.Op)
}

// send writes one reply, with fd unless it is -1.
func send(r reply, fd int) error {
	msg, err := json.Marshal(r)
	if err != nil {
		return err
	}
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	return unix.Sendmsg(helperSock, msg, oob, nil, 0)
}

// checkPath refuses a relative path: the daemon resolves none against a
// directory of its own.
func checkPath(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%q: not an absolute path", p)
	}
	return nil
}

// openWant opens w as this process (the user), never through a magic
// link, and checks the file's type where a regular file is wanted.
func openWant(w Want) (int, error) {
	if err := checkPath(w.Path); err != nil {
		return -1, err
	}
	how := unix.OpenHow{Flags: uint64(w.Flags | unix.O_CLOEXEC), Mode: uint64(w.Mode), Resolve: unix.RESOLVE_NO_MAGICLINKS}
	if w.Flags&(unix.O_CREAT|unix.O_TMPFILE) == 0 {
		how.Mode = 0
	}
	fd, err := unix.Openat2(unix.AT_FDCWD, w.Path, &how)
	if errors.Is(err, unix.ENOSYS) {
		// A kernel before 5.6: this process is the user's own and
		// holds nothing of the daemon's, which is what matters most.
		fd, err = unix.Open(w.Path, w.Flags|unix.O_CLOEXEC, w.Mode)
	}
	if err != nil {
		return -1, err
	}
	if w.Regular {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return -1, err
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return -1, ErrNotRegular
		}
	}
	return fd, nil
}

// dial connects to the Unix stream socket at p.
func dial(p string) (int, error) {
	if err := checkPath(p); err != nil {
		return -1, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: p}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// writeLayoutTar writes the OCI layout at dir as a tar stream of regular
// files only (index.json, oci-layout, blobs/ALG/HEX); anything else in
// the directory is skipped.
func writeLayoutTar(w io.Writer, dir string) error {
	if err := checkPath(dir); err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	add := func(rel string) error {
		fd, err := openWant(Want{Path: filepath.Join(dir, rel), Flags: unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY, Regular: true})
		if err != nil {
			return &os.PathError{Op: "open", Path: filepath.Join(dir, rel), Err: err}
		}
		f := os.NewFile(uintptr(fd), rel)
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		h := &tar.Header{Name: rel, Typeflag: tar.TypeReg, Mode: 0o600, Size: fi.Size(), ModTime: fi.ModTime()}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		// Exactly Size bytes: the file may grow meanwhile.
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
			if err := add(filepath.Join("blobs", a.Name(), b.Name())); err != nil && !errors.Is(err, ErrNotRegular) {
				return err
			}
		}
	}
	return tw.Close()
}
