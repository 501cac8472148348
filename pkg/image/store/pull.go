package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"
	"golang.org/x/sync/errgroup"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/layer"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// The pull: a source's layers downloaded (several at once), applied in
// order onto a root file system (package layer) and squashed (package
// squashfs) into an image of the cache.

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
	switch {
	case src.Repo == "" && errors.Is(err, fs.ErrNotExist):
		// A local image whose manifest names a config it does not hold.
		return nil, fmt.Errorf("%w: the archive lacks the image's config: a manifest alone does not give the image; make the image (or its file or layout) again", image.ErrIncompleteImage)
	case src.Repo != "" && source.BlobUnknown(err):
		return nil, fmt.Errorf("%w: the repository %s lacks the image's config: pull it from the repository it was pushed to, or push the image there", image.ErrIncompleteImage, src.Repo)
	}
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
	// Its squashfs will hold at least that much: room for it in the
	// cache, before anything is downloaded (room.go).
	room, err := c.reserve(declared, "the image")
	if err != nil {
		return nil, err
	}
	defer room.release()
	work, err := os.MkdirTemp(c.tmp, "pull-")
	if err != nil {
		return nil, err
	}
	defer c.removeLater(work)
	budget := &image.Budget{Limit: c.o.MaxImageSize}
	// Written beside its final place (TmpDir may be another file system);
	// Open removes it if we die before publishing.
	out, err := newTempFile(c.images)
	if err != nil {
		return nil, err
	}
	defer os.Remove(out) // a no-op once published
	var times pullTimes
	var have map[digest.Digest]bool
	if c.t2s.Command != "" {
		times, have, err = c.fetchAndStream(ctx, src, layers, work, out, budget, room, report)
		if errors.Is(err, layer.ErrNeedsExtraction) {
			c.log.Info("image pull: layers applied by extraction", "digest", src.Digest, "why", err)
			budget.SetUsed(0)
			err = c.extractAndSquash(ctx, src, layers, work, out, budget, room, have, report, &times)
		}
	} else {
		err = c.extractAndSquash(ctx, src, layers, work, out, budget, room, nil, report, &times)
	}
	if err != nil {
		return nil, err
	}
	// Every blob came from src: a repository is known by the image.
	if err := c.publish(src.Digest.String(), out, cfg, addSource(nil, src.Repo), room); err != nil {
		return nil, err
	}
	// Where the time went: the downloads run beside the applies; in an
	// apply, decompression and extraction (or the squashfs writer) run at
	// once, and the waits say which of the two held it up (layer.Times).
	c.log.Info("image pulled", "digest", src.Digest, "layers", len(layers), "squasher", times.squasher,
		"apply", times.applied.Sub(start), "squash", time.Since(times.applied),
		"download", times.download.Sub(start), "decompress_wait", times.WaitDecompress,
		"extract_wait", times.WaitExtract, "decompressor", times.Decompressor,
		"unpacked_bytes", times.UncompressedBytes)
	return nil, nil
}

// extractAndSquash applies the layers onto a root file system in work
// (downloading those not in have) and squashes it into out with
// mksquashfs.
func (c *Cache) extractAndSquash(ctx context.Context, src *source.Source, layers []types.BlobInfo, work, out string, budget *image.Budget, room *reservation, have map[digest.Digest]bool, report func(Progress), times *pullTimes) error {
	rootfs := filepath.Join(work, "rootfs")
	// The image's "./" entry, if any, sets the root's mode; 0755 otherwise
	// (MkdirTemp's 0700 would lock users out of their own container).
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return err
	}
	t, err := c.fetchAndApply(ctx, src, layers, work, rootfs, budget, have, report)
	if err != nil {
		return err
	}
	*times = t
	// Now that the image is unpacked, the room its squashfs may take.
	if err := room.grow(squashBound(budget.Used()), "the image, unpacked to "+image.HumanSize(budget.Used())+","); err != nil {
		return err
	}
	times.applied, times.squasher = time.Now(), "mksquashfs"
	report(Progress{Phase: "squashing", Message: c.mks.Comp.Name})
	return c.mks.Run(ctx, rootfs, out)
}

// pullTimes is where a pull's time went, for its log line.
type pullTimes struct {
	download time.Time // the last layer's arrival
	applied  time.Time // the last layer applied (or streamed)
	squasher string
	layer.Times
}

// fetchAndApply downloads every distinct layer not in have (up to
// parallelDownloads at once, bottom layers first) into work, and applies
// the layers onto rootfs in order as soon as each has arrived, their bytes
// taken from budget.
func (c *Cache) fetchAndApply(ctx context.Context, src *source.Source, layers []types.BlobInfo, work, rootfs string, budget *image.Budget, have map[digest.Digest]bool, report func(Progress)) (pullTimes, error) {
	var times pullTimes
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lastUse := map[digest.Digest]int{}
	for i, l := range layers {
		lastUse[l.Digest] = i
	}
	dl := c.startDownloads(ctx, src, layers, work, have, report)
	var applyErr error
	for i, l := range layers {
		if dl.await(l.Digest) != nil {
			break
		}
		report(Progress{Phase: "downloading", Layer: l.Digest.String(), Message: fmt.Sprintf("applying layer %d of %d", i+1, len(layers))})
		t, err := layer.ApplyTimed(dl.ctx, rootfs, workBlob(work, l.Digest), budget)
		times.Add(t)
		if err != nil {
			applyErr = fmt.Errorf("layer %d of %d (%s): %w", i+1, len(layers), l.Digest, err)
			cancel(applyErr)
			break
		}
		if lastUse[l.Digest] == i {
			_ = os.Remove(workBlob(work, l.Digest))
		}
	}
	werr := dl.wait()
	times.download = dl.last
	switch {
	case applyErr != nil:
		return times, applyErr
	case werr != nil:
		return times, werr
	}
	return times, context.Cause(ctx)
}

func workBlob(work string, d digest.Digest) string {
	return filepath.Join(work, "blob-"+d.Encoded())
}

// downloads fetches a pull's layer blobs into its work directory, several
// at once, in the order given.
type downloads struct {
	ctx   context.Context // ends with the first failure
	g     *errgroup.Group
	ready map[digest.Digest]chan struct{}
	mu    sync.Mutex
	last  time.Time // the last blob's arrival
}

// startDownloads starts downloading the distinct blobs of layers, in
// their order, but those in have (already in work).
func (c *Cache) startDownloads(ctx context.Context, src *source.Source, layers []types.BlobInfo, work string, have map[digest.Digest]bool, report func(Progress)) *downloads {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.parallelDownloads)
	d := &downloads{ctx: gctx, g: g, ready: map[digest.Digest]chan struct{}{}}
	var todo []types.BlobInfo
	for _, l := range layers {
		if _, ok := d.ready[l.Digest]; ok {
			continue
		}
		d.ready[l.Digest] = make(chan struct{})
		if have[l.Digest] {
			close(d.ready[l.Digest])
			continue
		}
		todo = append(todo, l)
	}
	go func() {
		for _, l := range todo {
			g.Go(func() error {
				if err := src.Download(gctx, l, workBlob(work, l.Digest), report); err != nil {
					return fmt.Errorf("layer %s: %w", l.Digest, err)
				}
				d.mu.Lock()
				d.last = time.Now()
				d.mu.Unlock()
				close(d.ready[l.Digest])
				return nil
			})
		}
	}()
	return d
}

// await waits for blob dg; an error if the downloads failed first.
func (d *downloads) await(dg digest.Digest) error {
	select {
	case <-d.ready[dg]:
		return nil
	case <-d.ctx.Done():
		return context.Cause(d.ctx)
	}
}

// wait waits for every download and returns the first failure.
func (d *downloads) wait() error {
	err := d.g.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	return err
}
