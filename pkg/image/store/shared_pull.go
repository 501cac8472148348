package store

import (
	"context"
	"errors"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// Pulls through the site image store (shared.go): the first node that
// needs an image builds it into the store, the others copy it from there.

// storeProblem is the note for a user whose image could not go into the
// store (full, read-only): this node builds it for itself.
func storeProblem(err error, then string) string {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return "warning: the site image store is full: " + then + "; tell your admin"
	case errors.Is(err, syscall.EROFS):
		return "warning: the site image store is read-only: " + then + "; tell your admin"
	}
	return "warning: the site image store cannot be used (" + err.Error() + "): " + then + "; tell your admin"
}

const (
	pullsItself  = "this node pulls the image for itself"
	othersPullIt = "the other nodes pull the image for themselves"
)

// pullVia is pull through the site image store, when there is one: the
// image comes from the store if a node put it there (once p's source has
// shown it: right.go); else this node takes the build lock, pulls, and
// puts it there; else it waits for the node that builds it. A store that
// cannot be written makes this node pull for itself, with a note to the
// user and a warning in the log. A pull from src shows p.
func (c *Cache) pullVia(ctx context.Context, src *source.Source, p *proof, uid uint32, report func(Progress)) (*Image, error) {
	pullSrc := func() (*Image, error) {
		_, err := c.pull(ctx, src, report)
		if err == nil {
			p.read()
		}
		return nil, err
	}
	s := c.shared
	if s == nil {
		return pullSrc()
	}
	d := src.Digest.String()
	for {
		ok, err := c.fromShared(ctx, d, p, report)
		if ok {
			return nil, nil
		}
		if refused(ctx, err) {
			return nil, err
		}
		if err != nil {
			c.log.Warn("site image store: cannot read the image", "digest", d, "err", err)
			report(Progress{Phase: "note", Message: storeProblem(err, pullsItself)})
			return pullSrc()
		}
		release, err := s.lock(d, uid)
		if errors.Is(err, errLockHeld) {
			if err := s.wait(ctx, d, uid, report); err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				c.log.Warn("site image store: cannot wait for the builder", "digest", d, "err", err)
				return pullSrc()
			}
			continue
		}
		if err != nil {
			c.log.Warn("site image store: cannot take the build lock; pulling for this node only", "digest", d, "err", err)
			report(Progress{Phase: "note", Message: storeProblem(err, pullsItself)})
			return pullSrc()
		}
		// Built between our look and our lock?
		if ok, err := c.fromShared(ctx, d, p, report); ok || refused(ctx, err) {
			release()
			return nil, err
		}
		_, err = pullSrc()
		if err == nil {
			c.exportShared(d, uid, report)
		}
		release()
		return nil, err
	}
}

// refused: fromShared failed for the caller's source or context, not for
// the store (a registry that does not answer is the user's source's
// fault, not the store's: the user hears of it as of any pull's).
func refused(ctx context.Context, err error) bool {
	return err != nil && (ctx.Err() != nil || errors.Is(err, image.ErrIncompleteImage) || errors.Is(err, image.ErrTooLarge) ||
		errors.Is(err, image.ErrRegistryUnreachable))
}

// fromShared copies d from the store into the cache, if the store has it
// and p's source has shown it.
func (c *Cache) fromShared(ctx context.Context, d string, p *proof, report func(Progress)) (bool, error) {
	e, err := c.shared.lookup(d)
	if err != nil || e == nil {
		return false, err
	}
	if err := c.showStored(ctx, d, e, p); err != nil {
		return false, err
	}
	start := time.Now()
	room, err := c.reserve(e.Size, "the image")
	if err != nil {
		return false, err
	}
	defer room.release()
	report(Progress{Phase: "note", Message: "copying the image from the site image store"})
	out, err := newTempFile(c.images)
	if err != nil {
		return false, err
	}
	defer os.Remove(out)
	if err := c.shared.copyOut(d, e, out); err != nil {
		return false, err
	}
	if err := c.publish(d, out, e.Config, e.Sources, room); err != nil {
		return false, err
	}
	c.shared.used(d)
	c.log.Info("image copied from the site image store", "digest", d, "size", e.Size, "built_by", e.Node, "duration", time.Since(start))
	return true, nil
}

// showStored has p's source show d, which the store holds as e: a
// repository e is known by shows it by its word, any other source by its
// blobs, and a repository that showed them is recorded in the store's
// entry (its failure is the store's, not the user's).
func (c *Cache) showStored(ctx context.Context, d string, e *sharedEntry, p *proof) error {
	if err := c.show(ctx, p, e.Sources); err != nil {
		return err
	}
	if p.repo == "" || slices.Contains(e.Sources, p.repo) {
		return nil
	}
	e.Sources = addSource(slices.Clone(e.Sources), p.repo)
	if err := c.shared.record(d, e); err != nil {
		c.log.Warn("site image store: cannot record a source of the image", "digest", d, "source", p.repo, "err", err)
	}
	return nil
}

// exportShared puts the freshly pulled d into the store, counted to uid,
// whose pull it was; a failure is the store's problem, not the pull's.
func (c *Cache) exportShared(d string, uid uint32, report func(Progress)) {
	release, err := c.Pin(d)
	if err != nil {
		return // evicted already: nothing to share
	}
	defer release()
	c.mu.Lock()
	var cfg ImageConfig
	var sources []string
	if e := c.ix.Images[d]; e != nil {
		cfg, sources = cloneConfig(e.config), slices.Clone(e.Sources)
	}
	c.mu.Unlock()
	start := time.Now()
	err = c.shared.export(d, c.imagePath(d), cfg, sources, uid, report)
	if errors.Is(err, ErrOverUserShare) {
		c.log.Info("site image store: the image is larger than a user's share; other nodes pull it themselves", "digest", d, "uid", uid, "err", err)
		report(Progress{Phase: "note", Message: "this image is " + err.Error() + ": it is not stored there, and other nodes that need it pull it for themselves"})
		return
	}
	if err != nil {
		c.log.Warn("site image store: cannot store the image; other nodes pull it themselves", "digest", d, "err", err)
		report(Progress{Phase: "note", Message: storeProblem(err, othersPullIt)})
		return
	}
	c.log.Info("image put into the site image store", "digest", d, "duration", time.Since(start))
}
