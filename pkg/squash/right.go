package squash

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"sync"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/image"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"
)

// Who is handed a cached image. The cache holds one copy of an image for
// every user of the node, and a digest is no secret: a manifest's bytes
// turn up in CI logs and `skopeo inspect --raw` output, and outlive a
// revoked access. So a user gets an image the cache (or the site image
// store) holds only once they have shown the right to it, for the very key
// it is held under (handOut):
//
//   - from a registry: the registry gave them the manifest, with their own
//     credentials (or did so earlier, for a digest or within TagTTL);
//   - from their own archive, layout or store: their source holds every
//     blob the manifest names, each matching its digest (verifyBlobs), or
//     the pull that made the image read them from it;
//   - a squashfs file: its bytes, which the cache hashes (file.go).
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
	what string // the source, for messages: "archive", "layout"...

	mu    sync.Mutex
	shown bool
}

// newProof starts r's proof: a registry's answer is shown already (the
// source holds the manifest it served to the user's credentials).
func newProof(src *source, r imageRef) *proof {
	what := "archive"
	switch r.kind {
	case kindOCILayout:
		what = "layout"
	case kindPodman, kindDockerd:
		what = "image store's export"
	}
	return &proof{src: src, what: what, shown: r.kind == kindRegistry}
}

func (p *proof) isShown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.shown
}

// read records that a pull read every blob of the image from p's source,
// each checked against its digest.
func (p *proof) read() {
	p.mu.Lock()
	p.shown = true
	p.mu.Unlock()
}

// show has p's source show the image, unless it has: errors wrap
// ErrIncompleteImage (a blob missing or not matching its digest), or are
// ErrTooLarge or the context's.
func (c *Cache) show(ctx context.Context, p *proof) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.shown {
		return nil
	}
	if err := c.verifyBlobs(ctx, p.src, p.what); err != nil {
		return err
	}
	p.shown = true
	return nil
}

// handOut gives uid the cached image d, by the name name, once uid has
// shown the right to it: earlier (uid is among its users), or by p. It
// returns nil, nil when d is not cached. Every image a Get of a reference
// hands out goes through here.
func (c *Cache) handOut(ctx context.Context, d string, r imageRef, name string, uid uint32, p *proof) (*Image, error) {
	for {
		shown := p.isShown() // not under c.mu: show holds p while it reads
		c.mu.Lock()
		e := c.ix.Images[d]
		if e == nil || shown || hasUID(e.Users, uid) {
			c.noteJobTagLocked(d, r, uid)
			img := c.confirmLocked(d, name, uid, r.kind == kindRegistry)
			c.mu.Unlock()
			return img, nil
		}
		c.mu.Unlock()
		// Not under the lock: this reads the whole source.
		if err := c.show(ctx, p); err != nil {
			return nil, err
		}
	}
}

var (
	errBlobMissing  = errors.New("is missing")
	errBlobMismatch = errors.New("does not match its digest")
)

// verifyBlobs reads every blob src's manifest names, the layers and then
// the config, and checks each against its digest: what a pull would read,
// without applying or squashing anything (about what reading the archive
// once more costs).
func (c *Cache) verifyBlobs(ctx context.Context, src *source, what string) error {
	img, err := image.FromUnparsedImage(ctx, src.sys, src.unparsed)
	if err != nil {
		return err
	}
	budget := &sizeBudget{limit: c.o.MaxImageSize}
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
			return fmt.Errorf("%w: layer %s is foreign or encrypted", ErrUnsupported, l.Digest)
		}
		if err := verifyBlob(ctx, src, l, budget); err != nil {
			return incomplete(ctx, err, fmt.Sprintf("the %s lacks the image's layers: layer %d of %d (%s)", what, i+1, len(layers), l.Digest))
		}
	}
	if cfg := img.ConfigInfo(); cfg.Digest != "" {
		if len(cfg.URLs) > 0 {
			return fmt.Errorf("%w: config %s is foreign", ErrUnsupported, cfg.Digest)
		}
		if err := verifyBlob(ctx, src, cfg, budget); err != nil {
			return incomplete(ctx, err, fmt.Sprintf("the %s lacks the image's config (%s)", what, cfg.Digest))
		}
	}
	return nil
}

// incomplete is err, from reading the blob that what names, as the user
// sees it.
func incomplete(ctx context.Context, err error, what string) error {
	switch {
	case ctx.Err() != nil:
		return context.Cause(ctx)
	case errors.Is(err, ErrTooLarge):
		return err
	case errors.Is(err, errBlobMissing):
		return fmt.Errorf("%w: %s %v: a manifest alone does not give the image", ErrIncompleteImage, what, err)
	case errors.Is(err, errBlobMismatch):
		return fmt.Errorf("%w: %s %v", ErrIncompleteImage, what, err)
	}
	return fmt.Errorf("%w: %s: %v", ErrIncompleteImage, what, err)
}

// verifyBlob reads the blob info names from src and checks its digest
// (and that it is no longer than the manifest says).
func verifyBlob(ctx context.Context, src *source, info types.BlobInfo, budget *sizeBudget) error {
	if err := info.Digest.Validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrUnsupported, err)
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
	n, err := io.Copy(&budgetWriter{w: dg.Hash(), b: budget}, &ctxReader{ctx, body})
	if err != nil {
		return err
	}
	if (info.Size >= 0 && n != info.Size) || dg.Digest() != info.Digest {
		return errBlobMismatch
	}
	return nil
}
