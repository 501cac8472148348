package squashfs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/charge"
	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/spawn"
)

// Tar2sqfs runs squashfs-tools-ng's tar2sqfs, which makes a squashfs of a
// tar stream as it reads it: a pull's layers merged into one stream
// (package layer's Stream) become the image with nothing extracted to
// disk, and the squashing runs beside the download and decompression
// instead of after them.
type Tar2sqfs struct {
	Command    string // path or name of tar2sqfs
	Comp       Compressor
	Processors int
}

// args renders the command line that writes out.
func (t Tar2sqfs) args(out string) []string {
	a := []string{
		// out is the empty file the caller made for it.
		"--force",
		// A record it cannot read fails the squash (by default tar2sqfs
		// skips it with a warning): a half image is worse than none.
		"--no-skip",
		"--quiet",
		"--compressor", t.Comp.Name,
	}
	if t.Comp.Level > 0 {
		a = append(a, "--comp-extra", "level="+strconv.Itoa(t.Comp.Level))
	}
	if t.Processors > 0 {
		a = append(a, "--num-jobs", strconv.Itoa(t.Processors))
	}
	return append(a, out)
}

// Available says whether the command runs here.
func (t Tar2sqfs) Available() error {
	return exec.Command(t.Command, "--version").Run()
}

// TarWriter is a running tar2sqfs: what is written to it is its tar
// input. Close ends the input and waits for the squashfs; Abort kills it.
type TarWriter struct {
	ctx   context.Context
	t     Tar2sqfs
	in    *os.File
	cmd   *exec.Cmd
	out   tailBuffer
	ended bool
	err   error // its verdict, once ended
	path  string
	fed   int64 // bytes written to it
}

// Start runs tar2sqfs writing the squashfs to out (an existing file, which
// it overwrites). It dies with the daemon, is charged to what it works
// for (package charge), and is killed when ctx ends.
func (t Tar2sqfs) Start(ctx context.Context, out string) (*TarWriter, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// Fewer, larger transfers: the stream is most of an image.
	_, _ = unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	w := &TarWriter{ctx: ctx, t: t, in: pw, path: out}
	w.cmd = exec.CommandContext(ctx, t.Command, t.args(out)...)
	w.cmd.Stdin, w.cmd.Stdout, w.cmd.Stderr = pr, &w.out, &w.out
	w.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = spawn.Start(w.cmd)
	pr.Close()
	if err != nil {
		pw.Close()
		return nil, failure(ctx, "tar2sqfs", t.Command, err, "", 0)
	}
	// Its output is bounded by what it is fed: the pull's budget
	// (max_image_size) and its room in the cache.
	if err := charge.Place(ctx, w.cmd.Process.Pid); err != nil {
		w.Abort()
		return nil, fmt.Errorf("tar2sqfs: %w", err)
	}
	return w, nil
}

// Write passes p to tar2sqfs.
func (w *TarWriter) Write(p []byte) (int, error) {
	n, err := w.in.Write(p)
	w.fed += int64(n)
	if err != nil {
		// It stopped reading: its own error says why. Having read the
		// end-of-archive blocks it may exit before the rest of them.
		w.in.Close()
		if werr := w.wait(); werr != nil {
			return n, werr
		}
		return len(p), nil
	}
	return n, nil
}

// Close ends the input and returns tar2sqfs's verdict.
func (w *TarWriter) Close() error {
	w.in.Close()
	return w.wait()
}

// freeBytes is the room left on dir's file system (0 if unknown).
func freeBytes(dir string) int64 {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return 0
	}
	return int64(st.Bavail) * st.Bsize
}

// Abort kills tar2sqfs and reaps it; the caller removes its output.
func (w *TarWriter) Abort() {
	w.in.Close()
	if !w.ended {
		w.cmd.Process.Kill()
		_ = w.wait()
	}
}

func (w *TarWriter) wait() error {
	if !w.ended {
		w.ended = true
		err := w.cmd.Wait()
		w.err = failure(w.ctx, "tar2sqfs", w.t.Command, err, w.out.String(), 0)
		if err != nil && w.ctx.Err() == nil && strings.Contains(w.out.String(), "I/O error") &&
			freeBytes(filepath.Dir(w.path)) < w.fed+w.fed/16+1<<20 {
			// tar2sqfs says "I/O error" for ENOSPC, and removes its
			// output: a disk with less room than the squashfs could
			// have taken is the cause.
			w.err = fmt.Errorf("tar2sqfs: %w", image.ErrNoSpace)
		}
	}
	return w.err
}
