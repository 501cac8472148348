package store

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"go.podman.io/image/v5/pkg/shortnames"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// What users and admins do with the cached images: pin one for a running
// container, list, remove and prune them.

// Pin marks the image with this digest as in use by a running container:
// it is not evicted or removed until release is called (release is
// idempotent). Pins live in memory only: after a daemon restart, pin the
// images of containers that still run. Errors: image.ErrNotFound.
func (c *Cache) Pin(digest string) (release func(), err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.ix.Images[digest]
	if e == nil {
		return nil, fmt.Errorf("pin %q: %w", digest, image.ErrNotFound)
	}
	c.pins[digest]++
	e.LastUsed = c.now()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if c.pins[digest]--; c.pins[digest] <= 0 {
				delete(c.pins, digest)
			}
			// MaxAge counts from the end of the last use.
			if e := c.ix.Images[digest]; e != nil {
				e.LastUsed = c.now()
				if err := c.ix.touch(c.dir); err != nil {
					c.log.Warn("cannot save the index", "err", err)
				}
			}
		})
	}, nil
}

// SoleUser reports whether what uid does to the image with this digest
// touches only uid: uid 0 always, another user when no one else uses the
// image. A user's rmi and prune drop the lingering mounts (and their pins,
// which mark the image used) of those images only.
func (c *Cache) SoleUser(digest string, uid uint32) bool {
	if uid == 0 {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.ix.Images[digest]
	return e != nil && len(e.Users) == 1 && e.Users[0] == uid
}

// List returns the images uid may see, most recently used first: uid 0
// sees all, other users the images they pulled or were confirmed for.
func (c *Cache) List(uid uint32) []Image {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Image
	for _, e := range c.ix.Images {
		if uid == 0 || hasUID(e.Users, uid) {
			out = append(out, c.view(e, uid))
		}
	}
	sortByUse(out)
	return out
}

func sortByUse(imgs []Image) {
	slices.SortFunc(imgs, func(a, b Image) int {
		if c := b.LastUsed.Compare(a.LastUsed); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
}

// Remove removes the image ref names (an image reference as given to Get,
// resolved through the index only, or a digest "sha256:..."). For uid 0
// the image is deleted. For another user, the user's claim is dropped and
// the image is deleted once nobody claims it; a user can only reach their
// own images. Errors: image.ErrNotFound, image.ErrInUse (pinned; nothing
// changed), image.ErrBadReference.
func (c *Cache) Remove(ref string, uid uint32) error {
	names, err := c.indexNames(ref)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var hits []*entry
	for _, e := range c.ix.Images {
		if uid != 0 && !hasUID(e.Users, uid) {
			continue
		}
		if names[e.Digest] || slices.ContainsFunc(mapsKeys(e.Refs), func(r string) bool { return names[r] }) {
			hits = append(hits, e)
		}
	}
	if len(hits) == 0 {
		return fmt.Errorf("remove %q: %w", ref, image.ErrNotFound)
	}
	for _, e := range hits {
		if c.pins[e.Digest] > 0 && (uid == 0 || len(e.Users) == 1) {
			return fmt.Errorf("remove %q: %w by a running container", ref, image.ErrInUse)
		}
	}
	for _, e := range hits {
		if uid != 0 {
			dropUser(e, uid)
			if len(e.Users) > 0 {
				continue
			}
		}
		c.deleteLocked(e)
	}
	return c.ix.save(c.dir)
}

func mapsKeys(m map[string]*refUse) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func dropUser(e *entry, uid uint32) {
	e.Users = removeUID(e.Users, uid)
	for name, r := range e.Refs {
		r.Users = removeUID(r.Users, uid)
		if len(r.Users) == 0 {
			delete(e.Refs, name)
		}
	}
}

// Prune evicts images and returns what uid no longer sees. With all
// false it applies MaxBytes and MaxAge (any user may trigger that; it is
// the admin's policy). With all set, uid 0 removes every unpinned image;
// another user drops their claim on every image, and images nobody
// claims any more are removed unless pinned.
func (c *Cache) Prune(ctx context.Context, all bool, uid uint32) ([]Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var gone []Image
	if all && uid != 0 {
		for _, e := range c.ix.Images {
			if !hasUID(e.Users, uid) {
				continue
			}
			gone = append(gone, c.view(e, uid))
			dropUser(e, uid)
			if len(e.Users) == 0 && c.pins[e.Digest] == 0 {
				c.deleteLocked(e)
			}
		}
		if err := c.ix.save(c.dir); err != nil {
			return nil, err
		}
	} else {
		for _, e := range c.evictLocked(all) {
			if uid == 0 || hasUID(e.Users, uid) {
				gone = append(gone, c.view(e, uid))
			}
		}
	}
	sortByUse(gone)
	return gone, nil
}

// indexNames returns the index keys (a digest, or canonical names) that
// ref may denote, asking no registry: a digest or a squashfs file's key
// (squashfs:sha256:..., sif:sha256:...) itself; a short name gives every candidate
// registries.conf lists for it.
func (c *Cache) indexNames(ref string) (map[string]bool, error) {
	if d := strings.TrimPrefix(ref, "@"); source.LooksLikeDigest(strings.TrimPrefix(strings.TrimPrefix(d, fileKeyPrefix), sifKeyPrefix)) {
		return map[string]bool{d: true}, nil
	}
	r, err := source.Parse(ref)
	if err != nil {
		return nil, source.Classify("remove", ref, "", err)
	}
	names := map[string]bool{r.String(): true}
	if r.Kind == source.KindRegistry && r.Short {
		res, err := shortnames.Resolve(c.src.SysContext(""), r.ShortName)
		if err != nil {
			return nil, source.Classify("remove", ref, "", fmt.Errorf("%w: %v", image.ErrShortName, err))
		}
		for _, pc := range res.PullCandidates {
			names["docker://"+source.Pinned(pc.Value).String()] = true
		}
	}
	return names, nil
}
