package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/docker/distribution/registry/api/errcode"
	v2 "github.com/docker/distribution/registry/api/v2"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

var (
	errBlobMissing  = errors.New("is missing")
	errBlobMismatch = errors.New("does not match its digest")
)

// Verify reads every blob s's manifest names, the layers and then the
// config, and checks each against its digest: what a pull would read,
// without applying or squashing anything (about what reading the archive
// once more, or downloading the layers, costs). It is how a source shows
// that it holds the image, not only its manifest. what names the source
// in messages ("archive", "repository HOST/NAME"); report gets the
// downloads' progress. Errors wrap image.ErrIncompleteImage (a blob
// missing, or not matching its digest) or image.ErrUnsupported, or are
// image.ErrTooLarge (MaxImageSize), a registry's or the context's.
func (s *Source) Verify(ctx context.Context, what string, report func(image.Progress)) error {
	img, err := s.Image(ctx)
	if err != nil {
		return err
	}
	budget := &image.Budget{Limit: s.res.o.MaxImageSize}
	layers := img.LayerInfos()
	seen := map[digest.Digest]bool{}
	for i, l := range layers {
		if seen[l.Digest] {
			continue
		}
		seen[l.Digest] = true
		// As pull refuses them, before containers/image would fetch a
		// foreign blob's URLs (the user's) as root.
		if len(l.URLs) > 0 || strings.HasSuffix(l.MediaType, "+encrypted") {
			return fmt.Errorf("%w: layer %s is foreign or encrypted", image.ErrUnsupported, l.Digest)
		}
		if err := s.verifyBlob(ctx, l, budget, report); err != nil {
			return incomplete(ctx, s.Repo, err, fmt.Sprintf("the %s lacks the image's layers: layer %d of %d (%s)", what, i+1, len(layers), l.Digest))
		}
	}
	if cfg := img.ConfigInfo(); cfg.Digest != "" {
		if len(cfg.URLs) > 0 {
			return fmt.Errorf("%w: config %s is foreign", image.ErrUnsupported, cfg.Digest)
		}
		if err := s.verifyBlob(ctx, cfg, budget, report); err != nil {
			return incomplete(ctx, s.Repo, err, fmt.Sprintf("the %s lacks the image's config (%s)", what, cfg.Digest))
		}
	}
	return nil
}

// verifyBlob reads one blob of s into nothing, checked against its
// digest: from a registry as a pull downloads it (retried, given up when
// it stalls), from a local source straight from the file.
func (s *Source) verifyBlob(ctx context.Context, info types.BlobInfo, budget *image.Budget, report func(image.Progress)) error {
	if s.Repo == "" {
		return verifyLocalBlob(ctx, s, info, budget)
	}
	start := budget.Used()
	err := s.res.retryBlob(ctx, func(ctx context.Context) error {
		budget.SetUsed(start) // a retry reads the blob again
		return s.fetchBlob(ctx, info, budget.Writer(io.Discard), report)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, image.ErrDigestMismatch):
		return errBlobMismatch
	case BlobUnknown(err), errors.Is(err, image.ErrIncompleteImage):
		// (fetchBlob's word for a blob the repository does not have.)
		return errBlobMissing
	}
	return err
}

// BlobUnknown: a registry says it has no such blob (in that repository).
func BlobUnknown(err error) bool {
	var ec errcode.ErrorCoder
	var ue docker.UnexpectedHTTPStatusError
	return errors.As(err, &ec) && ec.ErrorCode() == v2.ErrorCodeBlobUnknown ||
		errors.As(err, &ue) && ue.StatusCode == 404
}

// incomplete is err, from reading the blob that what names, as the user
// sees it. A registry that does not answer is not taken for one that
// lacks the blob.
func incomplete(ctx context.Context, repo string, err error, what string) error {
	// For a registry: why its word did not do, and what to do instead.
	hint := ""
	if repo != "" {
		hint = ": a registry must serve an image's layers unless the image came from that repository: pull it from the repository it was pushed to, or push its layers there"
	}
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case errors.Is(err, image.ErrTooLarge):
		return err
	case repo != "" && (Transient(err) || errors.Is(err, image.ErrRegistryUnreachable)):
		return err
	case errors.Is(err, errBlobMissing):
		if hint == "" {
			hint = ": a manifest alone does not give the image"
		}
		return fmt.Errorf("%w: %s %v%s", image.ErrIncompleteImage, what, err, hint)
	case errors.Is(err, errBlobMismatch):
		return fmt.Errorf("%w: %s %v%s", image.ErrIncompleteImage, what, err, hint)
	}
	return fmt.Errorf("%w: %s: %v%s", image.ErrIncompleteImage, what, oneLine(err.Error()), hint)
}

// verifyLocalBlob reads the blob info names from src and checks its
// digest (and that it is no longer than the manifest says).
func verifyLocalBlob(ctx context.Context, src *Source, info types.BlobInfo, budget *image.Budget) error {
	if err := info.Digest.Validate(); err != nil {
		return fmt.Errorf("%w: %v", image.ErrUnsupported, err)
	}
	rc, _, err := src.src.GetBlob(ctx, info, none.NoCache)
	if errors.Is(err, fs.ErrNotExist) {
		return errBlobMissing
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	var body io.Reader = rc
	if info.Size >= 0 {
		body = io.LimitReader(rc, info.Size+1)
	}
	dg := info.Digest.Algorithm().Digester()
	n, err := io.Copy(budget.Writer(dg.Hash()), &ctxReader{ctx, body})
	if err != nil {
		return err
	}
	if (info.Size >= 0 && n != info.Size) || dg.Digest() != info.Digest {
		return errBlobMismatch
	}
	return nil
}

// ctxReader stops a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, context.Cause(r.ctx)
	}
	return r.r.Read(p)
}
