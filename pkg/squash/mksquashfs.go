package squash

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/charge"
	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// DefaultCompression is zstd level 3: on the project's test image it
// gives gzip -9's size (313 vs 300 MB) in a fifteenth of the time (about
// 4 s vs 60 s), and the kernel mounts it (measurements.md).
const DefaultCompression = "zstd:3"

// compressor is a parsed Options.Compression.
type compressor struct {
	name  string
	level int // 0: the compressor's default
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

// parseCompression parses "NAME" or "NAME:LEVEL", e.g. "zstd:3", "lz4".
func parseCompression(s string) (compressor, error) {
	if s == "" {
		s = DefaultCompression
	}
	name, lvl, hasLevel := strings.Cut(s, ":")
	r, ok := kernelCompressors[name]
	if !ok {
		return compressor{}, fmt.Errorf("compression %q: not one the kernel can mount (gzip, zstd, lzo, xz, lz4)", s)
	}
	c := compressor{name: name}
	if hasLevel {
		n, err := strconv.Atoi(lvl)
		if err != nil || r[1] == 0 || n < r[0] || n > r[1] {
			if r[1] == 0 {
				return compressor{}, fmt.Errorf("compression %q: %s takes no level", s, name)
			}
			return compressor{}, fmt.Errorf("compression %q: level must be %d to %d", s, r[0], r[1])
		}
		c.level = n
	}
	return c, nil
}

// CheckCompression returns the error New would return for Options.Compression s; nil when it is one the kernel mounts.
func CheckCompression(s string) error { _, err := parseCompression(s); return err }

// mksquashfs runs mksquashfs as a binary (so tests can swap in a script).
type mksquashfs struct {
	Command    string // path or name of mksquashfs
	Comp       compressor
	Processors int
	Exclude    []string // paths relative to the source left out (-e)
	AllRoot    bool     // every entry recorded as root's (-all-root)
	// MaxSize (> 0) bounds the file mksquashfs writes, as its
	// RLIMIT_FSIZE: past it the kernel stops the write and mksquashfs
	// (SIGXFSZ), and the squash fails with ErrTooLarge.
	MaxSize int64
}

// args renders the command line that squashes dir into out.
func (m mksquashfs) args(dir, out string) []string {
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
		"-comp", m.Comp.name,
	}
	if m.Comp.level > 0 {
		a = append(a, "-Xcompression-level", strconv.Itoa(m.Comp.level))
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

// run squashes dir into out. On failure out may exist; the caller removes
// its work directory. A full file system is reported as ErrNoSpace.
func (m mksquashfs) run(ctx context.Context, dir, out string) error {
	return m.runIn(ctx, "", dir, out, nil)
}

// runIn is run chrooted into root ("": none), where dir and out are
// paths. With as, mksquashfs is as's uid and gid, mapped to 0 in a user
// namespace of its own that maps no other id, with the caller's thread's
// groups (set them first: the namespace denies setgroups).
func (m mksquashfs) runIn(ctx context.Context, root, dir, out string, as *Owner) error {
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
	err := cmd.Start()
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
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGXFSZ {
			return image.TooLarge("squashes to", m.MaxSize)
		}
	}
	msg := strings.TrimSpace(outBuf.String())
	if m.MaxSize > 0 && strings.Contains(msg, "File too large") {
		return image.TooLarge("squashes to", m.MaxSize)
	}
	if strings.Contains(msg, "No space left on device") {
		return fmt.Errorf("mksquashfs: %w", image.ErrNoSpace)
	}
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%q not found: install squashfs-tools: %w", m.Command, err)
	}
	return fmt.Errorf("mksquashfs: %w: %s", err, lastLines(msg, 3))
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

// superblock is the part of the squashfs 4.0 superblock we check.
type superblock struct {
	Magic       uint32
	Inodes      uint32
	MkfsTime    uint32
	BlockSize   uint32
	Fragments   uint32
	Compression uint16
	BlockLog    uint16
	Flags       uint16
	NoIDs       uint16
	Major       uint16
	Minor       uint16
	RootInode   uint64
	BytesUsed   uint64
	IDTable     uint64
	XattrTable  uint64
	InodeTable  uint64
	DirTable    uint64
	FragTable   uint64
	LookupTable uint64
}

const squashfsMagic = 0x73717368 // "hsqs" little-endian

// squashfsCompressors maps the superblock's compression id to the names
// in kernelCompressors; 2 (lzma) is missing: the kernel cannot mount it.
var squashfsCompressors = map[uint16]string{1: "gzip", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}

// checkSquashfs checks that the file at path is a squashfs image the
// kernel may parse and that holds nothing an image may not: the
// superblock is sane and consistent with the file's size (a truncated
// copy fails here), unsquashfs can read the superblock and walk every
// directory and inode, no inode is a device node or a setuid or setgid
// file, and no xattr is trusted.* or security.* (sqfs.go). It is run on
// our own root-owned copy, never on a file a user can still change. The
// error says what is wrong in words, and wraps ErrNotSquashfs or
// ErrUnsafeFile.
func checkSquashfs(ctx context.Context, unsquashfs, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	sb, err := readSuperblock(f, fi.Size())
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, unsquashfs, "-s", path)
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%q not found: install squashfs-tools: %w", unsquashfs, err)
		}
		return fmt.Errorf("%w: unsquashfs -s: %s", image.ErrNotSquashfs, lastLine(out.String(), err))
	}
	if s := out.String(); strings.Contains(s, "FATAL ERROR") || strings.Contains(s, "failed to read") {
		return fmt.Errorf("%w: unsquashfs -s: %s", image.ErrNotSquashfs, lastLine(s, nil))
	}
	if err := checkXattrs(f, fi.Size(), sb); err != nil {
		return err
	}
	return checkTree(ctx, unsquashfs, path)
}

// checkTree has unsquashfs walk every directory and inode, as the kernel
// will, and refuses what checkListing refuses.
func checkTree(ctx context.Context, unsquashfs, path string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, unsquashfs, "-n", "-lln", "-UTC", "-d", "", path)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "TZ=UTC"}
	var errOut tailBuffer
	cmd.Stderr = &errOut
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%q: %w", unsquashfs, err)
	}
	// Errors go to stdout too (unsquashfs 4.5 exits 0 after some).
	tail := &tailBuffer{}
	listErr := checkListing(io.TeeReader(stdout, tail))
	if listErr != nil {
		cancel()
	}
	_, _ = io.Copy(io.Discard, stdout)
	werr := cmd.Wait()
	switch s := tail.String() + errOut.String(); {
	case listErr != nil:
		return listErr
	case werr != nil:
		return fmt.Errorf("%w: unsquashfs -l: %s", image.ErrNotSquashfs, lastLine(s, werr))
	case strings.Contains(s, "FATAL ERROR") || strings.Contains(s, "failed to read"):
		return fmt.Errorf("%w: unsquashfs -l: %s", image.ErrNotSquashfs, lastLine(s, nil))
	}
	return nil
}

// readSuperblock reads and checks the superblock of the squashfs in r
// (size bytes): magic, version, a compression the kernel mounts, block
// size, and tables within the file. Errors wrap ErrNotSquashfs.
func readSuperblock(r io.ReaderAt, size int64) (superblock, error) {
	var sb superblock
	if err := binary.Read(io.NewSectionReader(r, 0, 96), binary.LittleEndian, &sb); err != nil {
		return sb, fmt.Errorf("%w: too short for a superblock (%d bytes)", image.ErrNotSquashfs, size)
	}
	switch {
	case sb.Magic != squashfsMagic:
		return sb, fmt.Errorf("%w: bad magic (not a squashfs file)", image.ErrNotSquashfs)
	case sb.Major != 4 || sb.Minor != 0:
		return sb, fmt.Errorf("%w: squashfs version %d.%d, the kernel reads 4.0", image.ErrNotSquashfs, sb.Major, sb.Minor)
	case squashfsCompressors[sb.Compression] == "":
		return sb, fmt.Errorf("%w: compression id %d cannot be mounted by the kernel", image.ErrNotSquashfs, sb.Compression)
	case sb.BlockSize < 4096 || sb.BlockSize > 1<<20 || sb.BlockSize != 1<<sb.BlockLog:
		return sb, fmt.Errorf("%w: corrupt superblock (block size %d)", image.ErrNotSquashfs, sb.BlockSize)
	case sb.BytesUsed > uint64(size):
		return sb, fmt.Errorf("%w: truncated: the superblock says %d bytes, the file has %d", image.ErrNotSquashfs, sb.BytesUsed, size)
	}
	for _, t := range []uint64{sb.InodeTable, sb.DirTable, sb.IDTable} {
		if t >= sb.BytesUsed {
			return sb, fmt.Errorf("%w: corrupt superblock (table beyond the end)", image.ErrNotSquashfs)
		}
	}
	return sb, nil
}

// lastLine is the last non-empty line of a tool's output: unsquashfs
// ends with its FATAL ERROR.
func lastLine(s string, err error) string {
	if l := lastLines(s, 1); l != "" {
		return l
	}
	if err != nil {
		return err.Error()
	}
	return "failed"
}
