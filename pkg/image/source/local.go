package source

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	dockerarchive "go.podman.io/image/v5/docker/archive"
	ociarchive "go.podman.io/image/v5/oci/archive"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/types"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// Local makes a root-owned copy of the local layout, archive or store
// image r (not a registry's), read with the permissions of cred (the user
// named user, whose home directory is home: podman:// finds their storage
// there), and opens it with containers/image; sys is SysContext's. The
// source holds the copy until its last Release. Progress goes to report
// (phase "exporting" for a store's export).
func (rs *Resolver) Local(ctx context.Context, sys *types.SystemContext, r Ref, cred Credential, user, home string, report func(image.Progress)) (_ *Source, err error) {
	work, err := os.MkdirTemp(rs.o.TmpDir, "local-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			rs.removeLater(work)
		}
	}()
	copyPath := filepath.Join(work, "image.tar")
	var policyRef types.ImageReference
	if r.Kind == KindPodman || r.Kind == KindDockerd {
		if policyRef, err = rs.exportStore(ctx, r, cred, user, home, copyPath, report); err != nil {
			return nil, err
		}
	} else if r.Kind == KindOCILayout {
		if err := rs.layoutAsUser(ctx, r.Path, cred, copyPath); err != nil {
			return nil, err
		}
		// The path as named: the helper resolves it as the user.
		policyRef = newPathRef(ocilayout.Transport, r.Path, r.String())
	} else {
		real, err := copyAsUser(ctx, r.Path, cred, copyPath, rs.o.MaxImageSize)
		if err != nil {
			return nil, err
		}
		var t types.ImageTransport = ociarchive.Transport
		if r.Kind == KindDockerArchive {
			t = dockerarchive.Transport
		}
		policyRef = newPathRef(t, real, r.String())
		if r.Kind == KindOCIArchive {
			if err := checkArchive(copyPath); err != nil {
				return nil, err
			}
		}
	}
	var ref types.ImageReference
	within := copyPath
	// A store's export holds the one image it was asked for, tagged as
	// the store names it (localhost/app:1 for podman://app:1, or none for
	// an id): it is not looked up by the name given.
	if r.Image != "" && r.Kind != KindPodman && r.Kind != KindDockerd {
		within += ":" + r.Image
	}
	if r.Kind == KindDockerArchive || r.Kind == KindPodman || r.Kind == KindDockerd {
		ref, err = dockerarchive.ParseReference(within)
	} else {
		ref, err = ociarchive.ParseReference(within)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", image.ErrBadReference, err)
	}
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	s := &Source{res: rs, src: src, sys: sys, holders: 1, policyRef: policyRef, cleanup: []func(){func() { rs.removeLater(work) }}}
	if err := rs.pickInstance(ctx, s); err != nil {
		src.Close()
		return nil, err
	}
	return s, nil
}

// exportStore writes r's image from its local store (podman://,
// dockerd://) as a docker-archive at out, read on cred's behalf (podman.go,
// dockerd.go), and returns the name policy.json judges it by: the store's
// transport (containers-storage, docker-daemon) and the image's name.
// The export is reported as phase "exporting" (status shows it) and ends
// at Options.HelperTimeout: what podman runs is the user's configuration's
// to decide (a storage.conf's mount_program is their own program), and it
// may never finish.
func (rs *Resolver) exportStore(ctx context.Context, r Ref, cred Credential, user, home, out string, report func(image.Progress)) (types.ImageReference, error) {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	helper, transport := "podman save", "containers-storage"
	hint := "check what your containers configuration (~/.config/containers) makes podman run, or ask your admin"
	if r.Kind == KindDockerd {
		helper, transport, hint = "the Docker daemon's export", "docker-daemon", "ask your admin"
	}
	limit := rs.o.HelperTimeout
	ctx, cancel := context.WithTimeoutCause(ctx, limit, &opError{kind: image.ErrHelperTimeout,
		detail: fmt.Sprintf("%s ran longer than %s (the node's helper_timeout) and was stopped, with every process it started", helper, limit),
		hint:   hint})
	defer cancel()
	report(image.Progress{Phase: "exporting", Message: helper + " as uid " + strconv.FormatUint(uint64(cred.UID), 10)})
	if r.Kind == KindPodman {
		err = exportPodman(ctx, rs.o.Podman, r.Image, cred, user, home, f, rs.o.MaxImageSize)
	} else {
		err = exportDockerd(ctx, rs.o.DockerSocket, r.Image, cred, f, rs.o.MaxImageSize)
	}
	if err != nil {
		return nil, err
	}
	return newPathRef(storeTransport(transport), r.Image, r.String()), f.Close()
}

// layoutAsUser reads the OCI layout at dir as cred (tarLayoutAsUser),
// for at most Options.HelperTimeout in all: the helper that walks it is
// the user's process, which they may pause and let run a moment now and
// then, so that its reads are never idle long enough to time out.
func (rs *Resolver) layoutAsUser(ctx context.Context, dir string, cred Credential, out string) error {
	if limit := rs.o.HelperTimeout; limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, limit, &opError{kind: image.ErrHelperTimeout,
			detail: fmt.Sprintf("reading the OCI layout as uid %d took longer than %s (the node's helper_timeout) and was stopped", cred.UID, limit),
			hint:   "copy it to a faster file system, or ask your admin"})
		defer cancel()
	}
	err := tarLayoutAsUser(ctx, dir, cred, out, rs.o.MaxImageSize)
	var oe *opError
	if err != nil && ctx.Err() != nil && errors.As(context.Cause(ctx), &oe) {
		return oe
	}
	return err
}

// checkArchive refuses an OCI archive holding anything but directories
// and regular files, before containers/image unpacks it as root: a device
// node or a FIFO where a blob should be would be read as the blob.
func checkArchive(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f) // f is an io.Seeker: bodies are skipped, not read
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: oci-archive: %v", image.ErrBadReference, err)
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeXGlobalHeader:
		default:
			return fmt.Errorf("%w: oci-archive: %q is not a regular file or directory", image.ErrBadReference, h.Name)
		}
	}
}

// copyAsUser copies the regular file p, read as cred, to out (0600), and
// returns the real path of what it read; a file larger than limit (> 0)
// is refused with ErrTooLarge.
func copyAsUser(ctx context.Context, p string, cred Credential, out string, limit int64) (string, error) {
	in, err := OpenAsUser(p, cred)
	if err != nil {
		return "", err
	}
	defer in.Close()
	real, err := FDPath(in)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// Counted as it is copied: the user may be growing the file.
	if _, err := io.Copy((&image.Budget{Limit: limit}).Writer(f), in); err != nil {
		if errors.Is(err, image.ErrTooLarge) {
			return "", image.TooLarge("is", limit)
		}
		return "", err
	}
	return real, f.Close()
}
