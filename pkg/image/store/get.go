package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"go.podman.io/image/v5/docker/reference"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// Get returns the image ref names, pulling and squashing it if needed.
// Concurrent calls share the work: one resolution per user and reference,
// one download and one squash per digest. A cached image is handed to a
// user only once the registry has confirmed that user's access (their own
// credentials fetched the same digest), once their own archive, layout or
// store export held every blob of it, or once they read the same file
// (right.go); when the registry cannot be reached, a user already
// confirmed for what the reference last resolved to gets that, with a
// warning in the log.
// Paths in ref (squashfs files, oci:, oci-archive:, docker-archive:) are
// read with o's credentials. policy.json decides every image handed out,
// cached or not (source/policy.go). The error is one line naming ref and
// the cause, wrapping a sentinel of package image (ErrManifestUnknown,
// ErrUnauthorized, ErrPolicy, ErrTooLarge, ErrUnsafeFile, ErrUnsafeLayer,
// ErrIncompleteImage, ...);
// ctx ending returns context.Cause(ctx), and the shared work goes on
// while other callers still wait for it.
func (c *Cache) Get(ctx context.Context, ref string, o PullOptions) (*Image, error) {
	start := time.Now()
	r, err := source.Parse(ref)
	if err != nil {
		return nil, source.Classify("pull", ref, "", err)
	}
	if r.Kind != source.KindRegistry && r.Kind != source.KindPodman && r.Kind != source.KindDockerd && !filepath.IsAbs(r.Path) {
		if !filepath.IsAbs(o.Cwd) {
			return nil, source.Classify("pull", ref, "", fmt.Errorf("%w: relative path, and no working directory to resolve it", image.ErrBadReference))
		}
		r.Path = filepath.Join(o.Cwd, r.Path)
	}
	if r.Kind == source.KindFile {
		f, err := source.OpenAsUser(r.Path, o.credential())
		if err != nil {
			return nil, source.Classify("use", ref, "", err)
		}
		defer f.Close()
		return c.getFile(ctx, ref, r.String(), f, o)
	}
	key := fmt.Sprintf("ref\x00%d\x00%s\x00%t", o.UID, r, o.Refresh)
	// The flight may outlive this call: it gets the credentials, not o.
	auth := o.AuthJSON
	o.AuthJSON = nil
	img, err := c.flights.do(ctx, key, o.Progress, nil, func(ctx context.Context, report func(Progress)) (*Image, error) {
		a := auth
		auth = nil
		return c.getImage(ctx, r, o, a, report)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		c.log.Warn("pull failed", "ref", ref, "uid", o.UID, "err", err)
		host := r.Registry()
		var he *source.HostError
		if errors.As(err, &he) {
			dropped := errors.As(err, new(*source.HelpersError))
			host, err = he.Host, he.Err
			if dropped {
				err = &source.HelpersError{Err: err}
			}
		}
		return nil, source.Classify("pull", ref, host, err)
	}
	c.log.Info("image ready", "ref", ref, "uid", o.UID, "digest", img.Digest, "duration", time.Since(start))
	out := *img
	out.Config, out.Refs, out.Users = cloneConfig(img.Config), slices.Clone(img.Refs), slices.Clone(img.Users)
	return &out, nil
}

// getImage resolves r for one user and returns the cached image, pulling
// it first if needed.
// auth is the user's auth.json; nothing holds it once the source is open.
func (c *Cache) getImage(ctx context.Context, r source.Ref, o PullOptions, auth []byte, report func(Progress)) (_ *Image, err error) {
	report(Progress{Phase: "resolving", Message: r.Input})
	authFile, droppedHelpers, removeAuth, err := c.src.WriteAuth(auth)
	if err != nil {
		return nil, err
	}
	auth = nil
	// containers/image reads the credentials when it opens the source,
	// and keeps them in that source until it is closed.
	defer removeAuth()
	if droppedHelpers {
		report(Progress{Phase: "note", Message: source.HelpersNote})
		defer func() {
			if err != nil {
				err = &source.HelpersError{Err: err}
			}
		}()
	}
	sys := c.src.SysContext(authFile)

	// One of the user's pull slots: a local source's is taken before its
	// copy, a registry's when first read (for a pull, or to show its
	// blobs: right.go). A pull started here keeps it until it ends.
	slot := &slotOnce{slots: c.slots, uid: o.UID, report: report}
	defer slot.free()
	var src *source.Source
	var name string
	if r.Kind == source.KindRegistry {
		named := r.Named
		if r.Short {
			if named, err = source.ShortCandidates(sys, r.ShortName); err != nil {
				return nil, err
			}
		}
		name = "docker://" + named.String()
		if r.Short {
			// Errors from here on name the registry the short name chose.
			defer func() {
				if err != nil {
					err = &source.HostError{Host: reference.Domain(named), Err: err}
				}
			}()
		}
		// Handed out without the registry's manifest and signatures: only
		// where the policy needs neither.
		if !o.Refresh && c.src.AllowedUnsigned(ctx, name) {
			if img := c.fresh(name, o.UID); img != nil {
				report(Progress{Phase: "done"})
				return img, nil
			}
		}
		if src, err = c.src.Registry(ctx, sys, named); err != nil {
			if source.Transient(err) && c.src.AllowedUnsigned(ctx, name) {
				if img := c.fallback(name, o.UID, err); img != nil {
					report(Progress{Phase: "done"})
					return img, nil
				}
			}
			return nil, err
		}
	} else {
		name = r.String()
		// Copying the user's file is the first half of the pull.
		if err := slot.hold(ctx); err != nil {
			return nil, err
		}
		if src, err = c.src.Local(ctx, sys, r, o.credential(), o.User, o.Home, report); err != nil {
			return nil, err
		}
	}
	defer src.Release()
	if err := c.src.CheckPolicy(ctx, src); err != nil {
		return nil, err
	}
	d := src.Digest.String()
	p := newProof(src, r, slot.hold, report)
	img, err := c.handOut(ctx, d, r, name, o.UID, p)
	if err != nil || img != nil {
		if err == nil {
			report(Progress{Phase: "done"})
		}
		return img, err
	}
	// Not cached. An image the site store holds would reach the user
	// without their source being read: the source shows the image first,
	// here rather than in a pull other users may join (its failure would
	// be theirs).
	if !p.isShown() && c.shared != nil {
		if e, _ := c.shared.lookup(d); e != nil {
			if err := c.showStored(ctx, d, e, p); err != nil {
				return nil, err
			}
		}
	}
	// A pull is the user's own, read from their source with their
	// credentials, shared only by their own requests (a tag and a digest
	// of one image, a job's steps): a pull another user started (from a
	// registry or an archive of their own, which they may stall or end
	// at will) is never this user's to wait for. Two users' pulls of one
	// image at once make it twice; the first published is kept.
	// Joining one's own pull takes no slot; starting one does, and a pull
	// that ends while this one waits for it may have made the image.
	key := fmt.Sprintf("digest\x00%d\x00%s", o.UID, d)
	if !c.flights.running(key) {
		if err := slot.hold(ctx); err != nil {
			return nil, err
		}
		if img, err := c.handOut(ctx, d, r, name, o.UID, p); err != nil || img != nil {
			if err == nil {
				report(Progress{Phase: "done"})
			}
			return img, err
		}
	}
	// A pull started here holds the source and the slot until it ends
	// (one that started as another ended takes the slot itself).
	start := func() func() {
		src.Acquire()
		endSlot := slot.keep()
		return func() { endSlot(); src.Release() }
	}
	_, err = c.flights.do(ctx, key, report, start, func(ctx context.Context, report func(Progress)) (*Image, error) {
		if err := slot.hold(ctx); err != nil {
			return nil, err
		}
		return c.pullVia(ctx, src, p, o.UID, report)
	})
	if err != nil {
		return nil, err
	}
	// Another user's pull may have made it: handOut has this source
	// show it then.
	img, err = c.handOut(ctx, d, r, name, o.UID, p)
	if err != nil {
		return nil, err
	}
	if img == nil {
		return nil, fmt.Errorf("%w: evicted as soon as it was pulled: the cache is too small for it", image.ErrNoSpace)
	}
	report(Progress{Phase: "done"})
	return img, nil
}
