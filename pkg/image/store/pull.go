package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
	"golang.org/x/sync/errgroup"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/layer"
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
// cached or not (policy.go). The error is one line naming ref and the
// cause, wrapping a sentinel (ErrManifestUnknown, ErrUnauthorized,
// ErrPolicy, ErrTooLarge, ErrUnsafeFile, ErrUnsafeLayer,
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
	img, err := c.flights.do(ctx, key, o.Progress, func(ctx context.Context, report func(Progress)) (*Image, error) {
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
		release, err := c.slots.acquire(ctx, o.UID, report)
		if err != nil {
			return nil, err
		}
		defer release()
		if src, err = c.src.Local(ctx, sys, r, o.credential(), o.User, o.Home, report); err != nil {
			return nil, err
		}
	}
	defer src.Release()
	if err := c.src.CheckPolicy(ctx, src); err != nil {
		return nil, err
	}
	d := src.Digest.String()
	// A registry is read for a pull, or to show its blobs (right.go): one
	// of the user's pull slots, taken once, when first needed. A local
	// source's is held already.
	var hold func(context.Context) error
	if r.Kind == source.KindRegistry {
		slot := &slotOnce{slots: c.slots, uid: o.UID, report: report}
		defer slot.free()
		hold = slot.hold
	}
	p := newProof(src, r, hold, report)
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
	if hold != nil {
		if err := hold(ctx); err != nil {
			return nil, err
		}
	}
	_, err = c.flights.do(ctx, "digest\x00"+d, report, func(ctx context.Context, report func(Progress)) (*Image, error) {
		src.Acquire()
		defer src.Release()
		return c.pullVia(ctx, src, p, report)
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

// pull downloads src's layers (several at once, each verified against its
// digest), applies them in order while later ones still download,
// squashes the result and publishes it. It returns nil, nil on success:
// callers take the entry from the index.
func (c *Cache) pull(ctx context.Context, src *source.Source, report func(Progress)) (*Image, error) {
	start := time.Now()
	img, err := src.Image(ctx)
	if err != nil {
		return nil, err
	}
	oc, err := img.OCIConfig(ctx)
	if err != nil {
		return nil, err
	}
	cfg := ImageConfig{Env: oc.Config.Env, Entrypoint: oc.Config.Entrypoint, Cmd: oc.Config.Cmd,
		WorkingDir: oc.Config.WorkingDir, User: oc.Config.User}
	layers := img.LayerInfos()
	var declared int64
	for _, l := range layers {
		if len(l.URLs) > 0 || strings.HasSuffix(l.MediaType, "+encrypted") {
			return nil, fmt.Errorf("%w: layer %s is foreign or encrypted", image.ErrUnsupported, l.Digest)
		}
		declared += max(l.Size, 0)
	}
	// Compressed sizes: the image unpacks to at least that much.
	if c.o.MaxImageSize > 0 && declared > c.o.MaxImageSize {
		return nil, image.TooLarge("has layers of", c.o.MaxImageSize)
	}
	work, err := os.MkdirTemp(c.tmp, "pull-")
	if err != nil {
		return nil, err
	}
	defer c.removeLater(work)
	rootfs := filepath.Join(work, "rootfs")
	// The image's "./" entry, if any, sets the root's mode; 0755 otherwise
	// (MkdirTemp's 0700 would lock users out of their own container).
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, err
	}
	if err := c.fetchAndApply(ctx, src, layers, work, rootfs, report); err != nil {
		return nil, err
	}
	applied := time.Now()
	report(Progress{Phase: "squashing", Message: c.mks.Comp.Name})
	// Written beside its final place (TmpDir may be another file system);
	// Open removes it if we die before publishing.
	out, err := newTempFile(c.images)
	if err != nil {
		return nil, err
	}
	defer os.Remove(out) // a no-op once published
	if err := c.mks.Run(ctx, rootfs, out); err != nil {
		return nil, err
	}
	// Every blob came from src: a repository is known by the image.
	if err := c.publish(src.Digest.String(), out, cfg, addSource(nil, src.Repo)); err != nil {
		return nil, err
	}
	c.log.Info("image pulled", "digest", src.Digest, "layers", len(layers),
		"apply", applied.Sub(start), "squash", time.Since(applied))
	return nil, nil
}

// fetchAndApply downloads every distinct layer (up to parallelDownloads at
// once, bottom layers first) into work, and applies the layers onto rootfs
// in order as soon as each has arrived.
func (c *Cache) fetchAndApply(ctx context.Context, src *source.Source, layers []types.BlobInfo, work, rootfs string, report func(Progress)) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.parallelDownloads)
	ready := map[digest.Digest]chan struct{}{}
	lastUse := map[digest.Digest]int{}
	var unique []types.BlobInfo
	for i, l := range layers {
		if _, ok := ready[l.Digest]; !ok {
			ready[l.Digest] = make(chan struct{})
			unique = append(unique, l)
		}
		lastUse[l.Digest] = i
	}
	blobPath := func(d digest.Digest) string { return filepath.Join(work, "blob-"+d.Encoded()) }
	go func() {
		for _, l := range unique {
			g.Go(func() error {
				if err := src.Download(gctx, l, blobPath(l.Digest), report); err != nil {
					return fmt.Errorf("layer %s: %w", l.Digest, err)
				}
				close(ready[l.Digest])
				return nil
			})
		}
	}()
	var applyErr error
	budget := &image.Budget{Limit: c.o.MaxImageSize}
	for i, l := range layers {
		select {
		case <-ready[l.Digest]:
		case <-gctx.Done():
		}
		if gctx.Err() != nil {
			break
		}
		report(Progress{Phase: "downloading", Layer: l.Digest.String(), Message: fmt.Sprintf("applying layer %d of %d", i+1, len(layers))})
		if err := layer.Apply(gctx, rootfs, blobPath(l.Digest), budget); err != nil {
			applyErr = fmt.Errorf("layer %d of %d (%s): %w", i+1, len(layers), l.Digest, err)
			cancel(applyErr)
			break
		}
		if lastUse[l.Digest] == i {
			_ = os.Remove(blobPath(l.Digest))
		}
	}
	werr := g.Wait()
	switch {
	case applyErr != nil:
		return applyErr
	case werr != nil:
		return werr
	}
	return context.Cause(ctx)
}

// publish moves a finished squashfs (and its config) into images/ and
// records it, known by the registry repositories sources (sorted; see
// right.go), then applies the cache's limits. Files go first and the
// index last, so a crash in between leaves files Open removes, never an
// entry without its file. The squashfs is fsynced first: after a power
// loss the index must not point at a file of zeroes.
func (c *Cache) publish(d, squashfs string, cfg ImageConfig, sources []string) error {
	f, err := os.Open(squashfs)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return err
	}
	// mksquashfs creates its output with the daemon's umask; nobody
	// but root needs to read it.
	if err := os.Chmod(squashfs, 0o600); err != nil {
		return err
	}
	b, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ix.Images[d] != nil {
		return nil // published meanwhile (two users' copies of one file)
	}
	if err := writeFileAtomic(c.images, filepath.Base(c.configPath(d)), b); err != nil {
		return err
	}
	if err := os.Rename(squashfs, c.imagePath(d)); err != nil {
		os.Remove(c.configPath(d))
		return err
	}
	now := c.now()
	c.ix.Images[d] = &entry{Digest: d, Size: fi.Size(), Created: now, LastUsed: now,
		Refs: map[string]*refUse{}, Checks: contentChecks, Sources: sources, config: cfg}
	if err := c.ix.save(c.dir); err != nil {
		delete(c.ix.Images, d)
		os.Remove(c.imagePath(d))
		os.Remove(c.configPath(d))
		return err
	}
	c.evictLocked(false)
	return nil
}

// newTempFile creates an empty 0600 file in dir for mksquashfs or a copy.
func newTempFile(dir string) (string, error) {
	f, err := os.CreateTemp(dir, ".new-*.squashfs")
	if err != nil {
		return "", err
	}
	return f.Name(), f.Close()
}

func readConfig(p string) (ImageConfig, error) {
	var cfg ImageConfig
	b, err := os.ReadFile(p)
	if err != nil {
		return cfg, err
	}
	return cfg, json.Unmarshal(b, &cfg)
}
