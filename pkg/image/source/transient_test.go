package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
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

// A registry that answers with empty or cut-short bodies is not
// "unreachable", and the message carries none of containers/image's notes
// on its retries.
func TestClassifyCutShortBody(t *testing.T) {
	err := fmt.Errorf("reading blob sha256:abc: (heuristic tuning data: total 0 @1041.186 ms, last retry 0 @0.000 ms, last progress @ 0.000 ms): %w", io.ErrUnexpectedEOF)
	got := Classify("pull", "reg.example:5000/app:1", "reg.example:5000", err)
	if !errors.Is(got, image.ErrRegistryFailing) || errors.Is(got, image.ErrRegistryUnreachable) {
		t.Fatalf("kind: %v", got)
	}
	msg := got.Error()
	if strings.Contains(msg, "heuristic") || strings.Contains(msg, "unreachable") || !strings.Contains(msg, "registry reg.example:5000 answered with an empty or cut-short body") {
		t.Fatalf("message: %s", msg)
	}
}

// A local image (no registry) cut short blames no registry.
func TestLocalCutShortBlamesNoRegistry(t *testing.T) {
	err := Classify("pull", "oci:/home/u/layout", "", io.ErrUnexpectedEOF)
	if msg := err.Error(); strings.Contains(msg, "registry") || !strings.Contains(msg, "ends early") {
		t.Errorf("%s", msg)
	}
	err = Classify("pull", "oci:/home/u/layout", "", fmt.Errorf("%w: layer sha256:1", image.ErrDigestMismatch))
	if msg := err.Error(); strings.Contains(msg, "registry") || !strings.Contains(msg, "make the image") {
		t.Errorf("%s", msg)
	}
}
