package layer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/chrootarchive"
	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// Apply applies one compressed (gzip, zstd) or plain layer blob onto
// rootfs: whiteouts and opaque directories delete from the layers below;
// hard links, symlinks, ownership, modes (setuid included) and xattrs are
// kept. Three things run at once: decompression (pigz or zstd when
// installed, else in Go), the header scanner in this process, and
// containers/storage's extractor in a chrooted child process (it sets its
// umask to 0, which must not happen in the daemon). A refused entry is
// reported as an error that wraps image.ErrUnsafeLayer and names the
// entry; nothing of it reaches the extractor. The layer's uncompressed
// bytes are taken from budget (may be nil): the extractor stops, with
// image.ErrTooLarge, once the image has used it up.
func Apply(ctx context.Context, rootfs, blob string, budget *image.Budget) error {
	f, err := os.Open(blob)
	if err != nil {
		return err
	}
	defer f.Close()
	plain, err := archive.DecompressStream(f)
	if err != nil {
		return fmt.Errorf("decompressing: %w", err)
	}
	defer plain.Close()

	// An OS pipe as the child's stdin: exec then adds no copying goroutine.
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	// Fewer, larger transfers between the scanner and the extractor.
	// (Through SyscallConn: pw.Fd() would make pw blocking and void the
	// write deadline used for cancellation.)
	if rc, err := pw.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
	}
	scanned := make(chan error, 1)
	go func() {
		err := scanLayer(newScanner(rootfs), plain, budget.Writer(pw))
		pw.Close()
		scanned <- err
	}()
	// Closing our read end does not stop the child, which holds its own
	// copy; on cancellation the scanner stops feeding it instead.
	stop := context.AfterFunc(ctx, func() { pw.SetWriteDeadline(time.Now()) })
	defer stop()

	_, applyErr := chrootarchive.ApplyUncompressedLayer(rootfs, pr, &archive.TarOptions{})
	// If the child died early, the scanner's next write fails.
	pr.Close()
	scanErr := <-scanned
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case scanErr != nil && applyErr == nil, scanErr != nil && !errors.Is(scanErr, syscall.EPIPE):
		// The scanner's verdict (or the decompressor's error) explains
		// the extractor's "unexpected EOF".
		return scanErr
	case applyErr != nil:
		return fmt.Errorf("extracting: %w", applyErr)
	}
	return nil
}

var errNoReexec = errors.New("reexec.Init() was not called at the start of main(): layers cannot be applied")

// ReexecReady reports whether the program can re-execute itself, as
// chrootarchive does to apply a layer (reexec panics when main() did not
// call reexec.Init()): a program that will apply layers calls it at start,
// and fails there rather than at its first pull.
func ReexecReady() (err error) {
	defer func() {
		if recover() != nil {
			err = errNoReexec
		}
	}()
	reexec.Command("podman-hpc-reexec-probe")
	return nil
}
