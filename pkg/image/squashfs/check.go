package squashfs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/spawn"
)

// Check checks that the file at path is a squashfs image the
// kernel may parse and that holds nothing an image may not: the
// superblock is sane and consistent with the file's size (a truncated
// copy fails here), unsquashfs can read the superblock and walk every
// directory and inode, no inode is a device node and no xattr is
// trusted.* (content.go says why setuid files and security.* pass). Run it on
// a root-owned copy, never on a file a user can still change: what it
// checked is what the kernel must then parse. The error says what is wrong
// in words, and wraps image.ErrNotSquashfs or image.ErrUnsafeFile.
func Check(ctx context.Context, unsquashfs, path string) error {
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the daemon
	var errOut tailBuffer
	cmd.Stderr = &errOut
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := spawn.Start(cmd); err != nil {
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
