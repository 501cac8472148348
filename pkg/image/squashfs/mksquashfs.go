package squashfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/charge"
	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/spawn"
)

// DefaultCompression is zstd level 3: on the project's test image it
// gives gzip -9's size (313 vs 300 MB) in a fifteenth of the time (about
// 4 s vs 60 s), and the kernel mounts it (measurements.md).
const DefaultCompression = "zstd:3"

// Compressor is a mksquashfs compressor and its level, as
// ParseCompression reads it.
type Compressor struct {
	Name  string
	Level int // 0: the compressor's default
}

// kernelCompressors are the compressors Linux's squashfs can mount, with
// the -Xcompression-level range mksquashfs accepts (0,0: no levels).
// mksquashfs's lzma is absent on purpose: the kernel cannot read it.
var kernelCompressors = map[string][2]int{
	"gzip": {1, 9},
	"zstd": {1, 22},
	"lzo":  {1, 9},
	"xz":   {0, 0},
	"lz4":  {0, 0},
}

// ParseCompression parses "NAME" or "NAME:LEVEL", e.g. "zstd:3", "lz4".
func ParseCompression(s string) (Compressor, error) {
	if s == "" {
		s = DefaultCompression
	}
	name, lvl, hasLevel := strings.Cut(s, ":")
	r, ok := kernelCompressors[name]
	if !ok {
		return Compressor{}, fmt.Errorf("compression %q: not one the kernel can mount (gzip, zstd, lzo, xz, lz4)", s)
	}
	c := Compressor{Name: name}
	if hasLevel {
		n, err := strconv.Atoi(lvl)
		if err != nil || r[1] == 0 || n < r[0] || n > r[1] {
			if r[1] == 0 {
				return Compressor{}, fmt.Errorf("compression %q: %s takes no level", s, name)
			}
			return Compressor{}, fmt.Errorf("compression %q: level must be %d to %d", s, r[0], r[1])
		}
		c.Level = n
	}
	return c, nil
}

// CheckCompression returns the error ParseCompression returns for s; nil
// when it is one the kernel mounts.
func CheckCompression(s string) error {
	_, err := ParseCompression(s)
	return err
}

// Mksquashfs runs mksquashfs as a binary (so tests can swap in a script).
type Mksquashfs struct {
	Command    string // path or name of mksquashfs
	Comp       Compressor
	Processors int
	Exclude    []string // paths relative to the source left out (-e)
	AllRoot    bool     // every entry recorded as root's (-all-root)
	// MaxSize (> 0) bounds the file mksquashfs writes, as its
	// RLIMIT_FSIZE: past it the kernel stops the write and mksquashfs
	// (SIGXFSZ), and the squash fails with image.ErrTooLarge.
	MaxSize int64
}

// args renders the command line that squashes dir into out.
func (m Mksquashfs) args(dir, out string) []string {
	a := []string{dir, out,
		"-noappend",
		// mksquashfs skips unreadable files with a warning by default;
		// a half image is worse than a failed pull.
		"-exit-on-error",
		"-no-progress", "-quiet",
		// By default mksquashfs caches up to a quarter of RAM (1.2 GB
		// RSS on a 24 GB node for a 1.4 GB image); 512M was no slower
		// there, and the node may be running jobs.
		"-mem", "512M",
		"-comp", m.Comp.Name,
	}
	if m.Comp.Level > 0 {
		a = append(a, "-Xcompression-level", strconv.Itoa(m.Comp.Level))
	}
	if m.Processors > 0 {
		a = append(a, "-processors", strconv.Itoa(m.Processors))
	}
	if m.AllRoot {
		a = append(a, "-all-root")
	}
	if len(m.Exclude) > 0 {
		a = append(append(a, "-e"), m.Exclude...)
	}
	return a
}

// Run squashes dir into out. On failure out may exist; the caller removes
// its work directory. A full file system is reported as image.ErrNoSpace.
func (m Mksquashfs) Run(ctx context.Context, dir, out string) error {
	return m.runIn(ctx, "", dir, out, nil)
}

// runIn is Run chrooted into root ("": none), where dir and out are
// paths. With as, mksquashfs is as's uid and gid, mapped to 0 in a user
// namespace of its own that maps no other id, with the caller's thread's
// groups (set them first: the namespace denies setgroups).
func (m Mksquashfs) runIn(ctx context.Context, root, dir, out string, as *Owner) error {
	cmd := exec.CommandContext(ctx, m.Command, m.args(dir, out)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if root != "" {
		cmd.SysProcAttr.Chroot = root
		cmd.Dir = "/"
	}
	if as != nil {
		// chroot comes before setuid (as the creator's uid, root's
		// directories are open to it); from setuid on it is the user.
		cmd.SysProcAttr.Cloneflags = syscall.CLONE_NEWUSER
		cmd.SysProcAttr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(as.UID), Size: 1}}
		cmd.SysProcAttr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: int(as.GID), Size: 1}}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true}
	}
	var outBuf tailBuffer
	cmd.Stdout, cmd.Stderr = &outBuf, &outBuf
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	// It dies with the daemon: a killed daemon's mksquashfs once wrote on
	// for no one. Started from a thread that outlives it: the spawner's,
	// or (chrooted) the caller's, which is locked and waits for it.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	var err error
	if root == "" {
		err = spawn.Start(cmd)
	} else {
		err = cmd.Start()
	}
	if err == nil {
		// Charged to the step or user it works for (its cgroups), from
		// its first milliseconds on: it starts no process of its own.
		if err = charge.Place(ctx, cmd.Process.Pid); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("mksquashfs: %w", err)
		}
	}
	if err == nil && m.MaxSize > 0 {
		// Set as soon as mksquashfs runs, while it still reads the tree:
		// it writes its output from then on. os/exec cannot set a
		// child's limit before exec, and the daemon's own must stay.
		lim := unix.Rlimit{Cur: uint64(m.MaxSize), Max: uint64(m.MaxSize)}
		if err = unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_FSIZE, &lim, nil); err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return fmt.Errorf("mksquashfs: limit its output: %w", err)
		}
	}
	if err == nil {
		err = cmd.Wait()
	}
	return failure(ctx, "mksquashfs", m.Command, err, outBuf.String(), m.MaxSize)
}

// failure explains why a squashfs writer (prog, run as command) failed
// with err, given its last output and its output limit (<= 0: none): a
// cancelled ctx's cause, image.ErrTooLarge past the limit,
// image.ErrNoSpace, a missing program; nil for a nil err.
func failure(ctx context.Context, prog, command string, err error, out string, maxSize int64) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGXFSZ {
			return image.TooLarge("squashes to", maxSize)
		}
	}
	msg := strings.TrimSpace(out)
	if maxSize > 0 && strings.Contains(msg, "File too large") {
		return image.TooLarge("squashes to", maxSize)
	}
	if strings.Contains(msg, "No space left on device") {
		return fmt.Errorf("%s: %w", prog, image.ErrNoSpace)
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		pkg := "squashfs-tools"
		if prog == "tar2sqfs" {
			pkg = "squashfs-tools-ng"
		}
		return fmt.Errorf("%q not found: install %s: %w", command, pkg, err)
	}
	return fmt.Errorf("%s: %w: %s", prog, err, lastLines(msg, 3))
}

// tailBuffer keeps the last 8 KiB written to it: enough to show why a
// child failed without holding all its chatter.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	const max = 8 << 10
	t.b = append(t.b, p...)
	if len(t.b) > max {
		t.b = append(t.b[:0], t.b[len(t.b)-max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "; ")
}

// Owner is a user's credentials: their uid, gid and other groups.
type Owner struct {
	UID, GID uint32
	Groups   []uint32
}
