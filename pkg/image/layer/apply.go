package layer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"go.podman.io/storage/pkg/reexec"
	"golang.org/x/sys/unix"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// Apply applies one compressed (gzip, zstd) or plain layer blob onto
// rootfs: whiteouts and opaque directories delete from the layers below;
// hard links, symlinks, ownership, modes (setuid included) and xattrs are
// kept. Three things run at once: decompression (igzip, pigz or zstd when
// installed, else in Go; decompress), the header scanner in this process,
// and containers/storage's extractor in a chrooted child process (it sets
// its umask to 0, which must not happen in the daemon). A refused entry is
// reported as an error that wraps image.ErrUnsafeLayer and names the
// entry; nothing of it reaches the extractor. The layer's uncompressed
// bytes are taken from budget (may be nil): the extractor stops, with
// image.ErrTooLarge, once the image has used it up.
func Apply(ctx context.Context, rootfs, blob string, budget *image.Budget) error {
	_, err := ApplyTimed(ctx, rootfs, blob, budget)
	return err
}

// Times says where a layer's Apply spent its time. The stages run at
// once, so the scanner between them measures: the time it waited for the
// decompressor's output (the decompressor was the slower), and the time
// it waited for the extractor to take what it wrote (the extractor was).
type Times struct {
	Total             time.Duration
	WaitDecompress    time.Duration
	WaitExtract       time.Duration
	Decompressor      string // "igzip", or "storage" (containers/storage's choice)
	UncompressedBytes int64
}

// ApplyTimed is Apply, and says where the time went.
func ApplyTimed(ctx context.Context, rootfs, blob string, budget *image.Budget) (Times, error) {
	start := time.Now()
	var t Times
	plain, name, err := openBlob(blob)
	if err != nil {
		return t, err
	}
	defer plain.Close()
	t.Decompressor = name

	// An OS pipe as the child's stdin: exec then adds no copying goroutine.
	pr, pw, err := os.Pipe()
	if err != nil {
		return t, err
	}
	defer pr.Close()
	// Fewer, larger transfers between the scanner and the extractor.
	// (Through SyscallConn: pw.Fd() would make pw blocking and void the
	// write deadline used for cancellation.)
	if rc, err := pw.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { _, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, 1<<20) })
	}
	in := &timedReader{r: plain}
	out := &timedWriter{w: pw}
	scanned := make(chan error, 1)
	go func() {
		err := scanLayer(newScanner(rootfs), in, budget.Writer(out))
		pw.Close()
		scanned <- err
	}()
	// On cancellation the extractor is killed, and the scanner stops
	// feeding it.
	stop := context.AfterFunc(ctx, func() { pw.SetWriteDeadline(time.Now()) })
	defer stop()

	applyErr := extract(ctx, rootfs, pr)
	// If the child died early, the scanner's next write fails.
	pr.Close()
	scanErr := <-scanned
	t.Total, t.WaitDecompress, t.WaitExtract, t.UncompressedBytes = time.Since(start), in.wait, out.wait, in.n
	switch {
	case ctx.Err() != nil:
		return t, context.Cause(ctx)
	case scanErr != nil && applyErr == nil, scanErr != nil && !errors.Is(scanErr, syscall.EPIPE):
		// The scanner's verdict (or the decompressor's error) explains
		// the extractor's "unexpected EOF".
		return t, scanErr
	case applyErr != nil:
		return t, fmt.Errorf("extracting: %w", applyErr)
	}
	return t, nil
}

// Add counts a layer's times into t's (Total apart).
func (t *Times) Add(lt Times) {
	t.WaitDecompress += lt.WaitDecompress
	t.WaitExtract += lt.WaitExtract
	t.UncompressedBytes += lt.UncompressedBytes
	if t.Decompressor == "" || t.Decompressor == lt.Decompressor {
		t.Decompressor = lt.Decompressor
	} else {
		t.Decompressor = "mixed"
	}
}

// openBlob opens a layer blob and returns its tar stream (decompress) and
// the decompressor's name; closing the stream closes the blob.
func openBlob(blob string) (io.ReadCloser, string, error) {
	f, err := os.Open(blob)
	if err != nil {
		return nil, "", err
	}
	plain, name, err := decompress(f)
	if err != nil {
		f.Close()
		return nil, "", fmt.Errorf("decompressing: %w", err)
	}
	return &blobStream{ReadCloser: plain, f: f}, name, nil
}

// blobStream is a blob's tar stream; Close closes both.
type blobStream struct {
	io.ReadCloser
	f *os.File
}

func (b *blobStream) Close() error {
	err := b.ReadCloser.Close()
	b.f.Close()
	return err
}

// timedReader counts the time spent in its reads, and the bytes.
type timedReader struct {
	r    io.Reader
	wait time.Duration
	n    int64
}

func (r *timedReader) Read(p []byte) (int, error) {
	start := time.Now()
	n, err := r.r.Read(p)
	r.wait += time.Since(start)
	r.n += int64(n)
	return n, err
}

// timedWriter counts the time spent in its writes.
type timedWriter struct {
	w    io.Writer
	wait time.Duration
}

func (w *timedWriter) Write(p []byte) (int, error) {
	start := time.Now()
	n, err := w.w.Write(p)
	w.wait += time.Since(start)
	return n, err
}

var errNoReexec = errors.New("reexec.Init() was not called at the start of main(): layers cannot be applied")

// ReexecReady reports whether the program can re-execute itself, as
// the extractor does to apply a layer (reexec panics when main() did not
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
