package squash

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"go.podman.io/storage/pkg/archive"
	"go.podman.io/storage/pkg/chrootarchive"
)

// errApplyEnded unblocks the scanner when the extractor stops reading.
var errApplyEnded = errors.New("layer extractor exited")

// applyLayer applies one compressed (gzip, zstd) or plain layer blob onto
// rootfs: whiteouts and opaque directories delete from the layers below;
// hard links, symlinks, ownership, modes (setuid included) and xattrs are
// kept. Three things run at once: decompression (pigz or zstd when
// installed, else in Go), the header scanner in this process, and
// containers/storage's extractor in a chrooted child process (it sets its
// umask to 0, which must not happen in the daemon). A refused entry is
// reported as an *entryError; nothing of it reaches the extractor.
func applyLayer(ctx context.Context, rootfs, blob string) error {
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

	pr, pw := io.Pipe()
	scanned := make(chan error, 1)
	go func() {
		err := scanLayer(newScanner(rootfs), plain, pw)
		pw.CloseWithError(err)
		scanned <- err
	}()
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(context.Cause(ctx)) })
	defer stop()

	_, applyErr := chrootarchive.ApplyUncompressedLayer(rootfs, pr, &archive.TarOptions{})
	pr.CloseWithError(errApplyEnded)
	scanErr := <-scanned
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case scanErr != nil && !errors.Is(scanErr, errApplyEnded):
		// The scanner's verdict (or the decompressor's error) explains
		// the extractor's "unexpected EOF".
		return scanErr
	case applyErr != nil:
		return fmt.Errorf("extracting: %w", applyErr)
	}
	return nil
}
