package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// A full disk is never retried like a network error: the retry would
// download the layer again only to fail alike.
func TestTransientNotForAFullDisk(t *testing.T) {
	for _, err := range []error{
		&os.PathError{Op: "write", Path: "/cache/tmp/layer", Err: syscall.ENOSPC},
		fmt.Errorf("apply layer: %w", syscall.EDQUOT),
		fmt.Errorf("mksquashfs: %w", image.ErrNoSpace),
		// A pipe's reader that failed on a full disk, as io.Copy reports it.
		fmt.Errorf("read tcp 10.0.0.1:5000: %w: write /cache/x: no space left on device", io.ErrUnexpectedEOF),
	} {
		if Transient(err) {
			t.Errorf("%v: transient", err)
		}
	}
	for _, err := range []error{context.DeadlineExceeded, syscall.ECONNRESET, io.ErrUnexpectedEOF} {
		if !Transient(fmt.Errorf("get blob: %w", err)) {
			t.Errorf("%v: not transient", err)
		}
	}
	if Transient(errors.New("manifest unknown")) {
		t.Error("manifest unknown: transient")
	}
}
