package store

import (
	"context"
	"slices"
	"strings"
	"sync"

	"github.com/distribution/reference"

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

// proof is what one Get's caller has shown of their right to the image
// their source resolved to. The pull that may read the source runs in a
// flight of its own goroutine: it is safe for concurrent use.
type proof struct {
	src  *source.Source
	what string // the source, for messages: "archive", "repository HOST/NAME"...
	// repo is the registry repository the source is, "" for a local one.
	repo string
	// hold takes one of the user's pull slots before the source is read
	// (a no-op while it is held).
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
	if err := p.hold(ctx); err != nil {
		return err
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

// fresh returns uid's image for name without asking the registry: always
// for a digest reference uid was confirmed for, within TagTTL for a tag.
func (c *Cache) fresh(name string, uid uint32) *Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	byDigest := strings.Contains(name, "@")
	for d, e := range c.ix.Images {
		r := e.Refs[name]
		if r == nil || !hasUID(e.Users, uid) {
			continue
		}
		if byDigest || (c.o.TagTTL > 0 && c.now().Sub(r.Resolved) < c.o.TagTTL) {
			return c.confirmLocked(d, name, uid, false, "")
		}
	}
	return nil
}

// fallback returns what name last resolved to, when the registry is out
// of reach and uid was confirmed for it; nil otherwise.
func (c *Cache) fallback(name string, uid uint32, err error) *Image {
	if !source.Transient(err) {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for d, e := range c.ix.Images {
		// The user's own name for it: a job's pinned tag (noteJobTagLocked)
		// is the word of the user who ran the job, not the registry's.
		if r := e.Refs[name]; r != nil && hasUID(e.Users, uid) && hasUID(r.Users, uid) {
			c.log.Warn("registry unreachable: using the cached image", "ref", name, "digest", d, "err", err)
			return c.confirmLocked(d, name, uid, false, "")
		}
	}
	return nil
}

// noteJobTagLocked records, for uid only, the tag of a pinned reference
// (NAME:TAG@DIGEST, as a job runs it) as one of uid's names of d, so that
// podman-hpcd images shows it and rmi NAME:TAG finds it. The pin came from
// the job's environment, which the user controls: the name is theirs
// alone (it is never marked as resolved by a registry, so it serves nobody
// within tag_ttl), and only their own claims on other digests move.
func (c *Cache) noteJobTagLocked(d string, r source.Ref, uid uint32) {
	if r.Kind != source.KindRegistry || r.Short {
		return
	}
	if _, ok := r.Named.(reference.Canonical); !ok {
		return
	}
	parsed, err := reference.ParseNormalizedNamed(strings.TrimPrefix(r.Input, "docker://"))
	if err != nil {
		return
	}
	tagged, ok := parsed.(reference.NamedTagged)
	if !ok {
		return
	}
	name := "docker://" + reference.TrimNamed(tagged).String() + ":" + tagged.Tag()
	e := c.ix.Images[d]
	if e == nil {
		return
	}
	for od, oe := range c.ix.Images {
		if other := oe.Refs[name]; other != nil && od != d {
			other.Users = removeUID(other.Users, uid)
			if len(other.Users) == 0 {
				delete(oe.Refs, name)
			}
		}
	}
	ru := e.Refs[name]
	if ru == nil {
		ru = &refUse{}
		e.Refs[name] = ru
	}
	if !hasUID(ru.Users, uid) {
		ru.Users = addUID(ru.Users, uid)
		if err := c.ix.save(c.dir); err != nil {
			c.log.Warn("cannot save the index", "err", err)
		}
	}
}
