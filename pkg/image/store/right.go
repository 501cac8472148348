package store

import (
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"sync"

	"github.com/podman-hpc/podman-hpc/pkg/image/source"
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
	src  *source.Source
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
func newProof(src *source.Source, r source.Ref, hold func(context.Context) error, report func(Progress)) *proof {
	p := &proof{src: src, what: "archive", hold: hold, report: report}
	switch r.Kind {
	case source.KindRegistry:
		p.repo = src.Repo
		p.what = "repository " + src.Repo
	case source.KindOCILayout:
		p.what = "layout"
	case source.KindPodman, source.KindDockerd:
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
	if err := p.src.Verify(ctx, p.what, p.report); err != nil {
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
func (c *Cache) handOut(ctx context.Context, d string, r source.Ref, name string, uid uint32, p *proof) (*Image, error) {
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
			img := c.confirmLocked(d, name, uid, r.Kind == source.KindRegistry, learned)
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
