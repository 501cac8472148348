package squash

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"

	"github.com/docker/distribution/registry/api/errcode"
	v2 "github.com/docker/distribution/registry/api/v2"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	ciimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// Who is handed a cached image. The cache holds one copy of an image for
// every user of the node, and a digest is no secret: a manifest's bytes
// turn up in CI logs and `skopeo inspect --raw` output, and outlive a
// revoked access. So a user gets an image the cache (or the site image
// store) holds only once they have shown the right to it, for the very key
// it is held under (handOut):
//
//   - from a registry repository the image is known by (its Sources: the
//     repositories that served its layers, to the pull that made it or to
//     a user who showed them since): the repository gave them the
//     manifest, with their own credentials (or did so earlier, for a
//     digest or within TagTTL);
//   - from any other repository, their own archive, layout or store: their
//     source holds every blob the manifest names, each matching its digest
//     (verifyBlobs), or the pull that made the image read them from it. A
//     repository that showed them is known from then on.
//   - a squashfs file: its bytes, which the cache hashes (file.go).
//
// A registry's word alone is not enough: anyone may serve the bytes of
// another user's manifest from a registry of their own, or a repository
// of theirs on a shared one (a registry may check that a manifest's blobs
// exist in the repository it is pushed to; a server of the user's checks
// nothing). It is the word of the repository the image came from
// that counts, as its access control is what guards the image.
//
// Once shown, the user is among the image's Users, and their next Get of
// it asks no more (as a digest reference never asks the registry again).
//
// Squashfs files and manifests are keyed apart: a file by fileKey of its
// sha256, a manifest by its digest. The bytes of a manifest saved as a
// file are just a file that is no squashfs.

// fileKeyPrefix starts the cache key (and the Image.Digest) of a squashfs
// file a user named: "squashfs:sha256:HEX".
const fileKeyPrefix = "squashfs:"

// fileKey is the cache key of a squashfs file whose sha256 is sum.
func fileKey(sum []byte) string {
	return fileKeyPrefix + "sha256:" + hex.EncodeToString(sum)
}

func isFileKey(k string) bool { return strings.HasPrefix(k, fileKeyPrefix) }

// keyStem names a key's files in images/: HEX for a manifest (as before
// files had keys of their own), squashfs-HEX for a file.
func keyStem(k string) string {
	if rest, ok := strings.CutPrefix(k, fileKeyPrefix); ok {
		return "squashfs-" + digestHex(rest)
	}
	return digestHex(k)
}

// proof is what one Get's caller has shown of their right to the image
// their source resolved to. The pull that may read the source runs in a
// flight of its own goroutine: it is safe for concurrent use.
type proof struct {
	src  *source
	what string // the source, for messages: "archive", "repository HOST/NAME"...
	// repo is the registry repository the source is, "" for a local one.
	repo string
	// hold takes one of the user's pull slots before the source is read
	// (nil: the caller holds one already).
	hold   func(context.Context) error
	report func(Progress)

	mu    sync.Mutex
	shown bool
}

// newProof starts r's proof, shown by nothing yet: a registry's answer
// counts only from a repository the image is known by (knownBy).
func newProof(src *source, r imageRef, hold func(context.Context) error, report func(Progress)) *proof {
	p := &proof{src: src, what: "archive", hold: hold, report: report}
	switch r.kind {
	case kindRegistry:
		p.repo = src.repo
		p.what = "repository " + src.repo
	case kindOCILayout:
		p.what = "layout"
	case kindPodman, kindDockerd:
		p.what = "image store's export"
	}
	return p
}

func (p *proof) isShown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shown
}

// knownBy: p's source is a repository among sources, whose word for the
// image is taken.
func (p *proof) knownBy(sources []string) bool {
	return p.repo != "" && slices.Contains(sources, p.repo)
}

// read records that a pull read every blob of the image from p's source,
// each checked against its digest.
func (p *proof) read() {
	p.mu.Lock()
	p.shown = true
	p.mu.Unlock()
}

// show has p's source show the image, unless it has or is among known
// (the image's Sources): errors wrap ErrIncompleteImage (a blob missing or
// not matching its digest), or are ErrTooLarge, a registry's, or the
// context's.
func (c *Cache) show(ctx context.Context, p *proof, known []string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown || p.knownBy(known) {
		p.shown = true
		return nil
	}
	if p.hold != nil {
		if err := p.hold(ctx); err != nil {
			return err
		}
	}
	if err := c.verifyBlobs(ctx, p); err != nil {
		return err
	}
	p.shown = true
	return nil
}

// handOut gives uid the cached image d, by the name name, once uid has
// shown the right to it: earlier (uid is among its users), or by p (its
// source is one d is known by, or shows d's blobs now). A repository that
// showed the blobs becomes one d is known by. It returns nil, nil when d
// is not cached. Every image a Get of a reference hands out goes through
// here.
func (c *Cache) handOut(ctx context.Context, d string, r imageRef, name string, uid uint32, p *proof) (*Image, error) {
	for {
		shown := p.isShown() // not under c.mu: show holds p while it reads
		c.mu.Lock()
		e := c.ix.Images[d]
		if e == nil {
			c.mu.Unlock()
			return nil, nil
		}
		if shown || p.knownBy(e.Sources) || hasUID(e.Users, uid) {
			c.noteJobTagLocked(d, r, uid)
			learned := ""
			if shown {
				learned = p.repo
			}
			img := c.confirmLocked(d, name, uid, r.kind == kindRegistry, learned)
			c.mu.Unlock()
			return img, nil
		}
		known := slices.Clone(e.Sources)
		c.mu.Unlock()
		// Not under the lock: this reads the whole source.
		if err := c.show(ctx, p, known); err != nil {
			return nil, err
		}
	}
}

// addSource returns the sorted set s with repo added.
func addSource(s []string, repo string) []string {
	i, found := slices.BinarySearch(s, repo)
	if found || repo == "" {
		return s
	}
	return slices.Insert(s, i, repo)
}

var (
	errBlobMissing  = errors.New("is missing")
	errBlobMismatch = errors.New("does not match its digest")
)

// verifyBlobs reads every blob p's source's manifest names, the layers
// and then the config, and checks each against its digest: what a pull
// would read, without applying or squashing anything (about what reading
// the archive once more, or downloading the layers, costs).
func (c *Cache) verifyBlobs(ctx context.Context, p *proof) error {
	src, what := p.src, p.what
	img, err := ciimage.FromUnparsedImage(ctx, src.sys, src.unparsed)
	if err != nil {
		return err
	}
	budget := &image.Budget{Limit: c.o.MaxImageSize}
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
		if err := c.verifyBlob(ctx, p, l, budget); err != nil {
			return incomplete(ctx, p, err, fmt.Sprintf("the %s lacks the image's layers: layer %d of %d (%s)", what, i+1, len(layers), l.Digest))
		}
	}
	if cfg := img.ConfigInfo(); cfg.Digest != "" {
		if len(cfg.URLs) > 0 {
			return fmt.Errorf("%w: config %s is foreign", image.ErrUnsupported, cfg.Digest)
		}
		if err := c.verifyBlob(ctx, p, cfg, budget); err != nil {
			return incomplete(ctx, p, err, fmt.Sprintf("the %s lacks the image's config (%s)", what, cfg.Digest))
		}
	}
	return nil
}

// verifyBlob reads one blob of p's source into nothing, checked against
// its digest: from a registry as a pull downloads it (retried, given up
// when it stalls), from a local source straight from the file.
func (c *Cache) verifyBlob(ctx context.Context, p *proof, info types.BlobInfo, budget *image.Budget) error {
	if p.repo == "" {
		return verifyLocalBlob(ctx, p.src, info, budget)
	}
	start := budget.Used()
	err := c.retryBlob(ctx, func(ctx context.Context) error {
		budget.SetUsed(start) // a retry reads the blob again
		return c.fetchBlob(ctx, p.src, info, budget.Writer(io.Discard), p.report)
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, image.ErrDigestMismatch):
		return errBlobMismatch
	case blobUnknown(err):
		return errBlobMissing
	}
	return err
}

// blobUnknown: a registry says it has no such blob (in that repository).
func blobUnknown(err error) bool {
	var ec errcode.ErrorCoder
	var ue docker.UnexpectedHTTPStatusError
	return errors.As(err, &ec) && ec.ErrorCode() == v2.ErrorCodeBlobUnknown ||
		errors.As(err, &ue) && ue.StatusCode == 404
}

// incomplete is err, from reading the blob that what names, as the user
// sees it. A registry that does not answer is not taken for one that
// lacks the blob.
func incomplete(ctx context.Context, p *proof, err error, what string) error {
	// For a registry: why its word did not do, and what to do instead.
	hint := ""
	if p.repo != "" {
		hint = ": a registry must serve an image's layers unless the image came from that repository: pull it from the repository it was pushed to, or push its layers there"
	}
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case errors.Is(err, image.ErrTooLarge):
		return err
	case p.repo != "" && (transient(err) || errors.Is(err, image.ErrRegistryUnreachable)):
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
func verifyLocalBlob(ctx context.Context, src *source, info types.BlobInfo, budget *image.Budget) error {
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
