package store

import (
	"context"
	"fmt"
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
	rootfs := filepath.Join(work, "rootfs")
	// The image's "./" entry, if any, sets the root's mode; 0755 otherwise
	// (MkdirTemp's 0700 would lock users out of their own container).
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return nil, err
	}
	budget := &image.Budget{Limit: c.o.MaxImageSize}
	times, err := c.fetchAndApply(ctx, src, layers, work, rootfs, budget, report)
	if err != nil {
		return nil, err
	}
	// Now that the image is unpacked, the room its squashfs may take.
	if err := room.grow(squashBound(budget.Used()), "the image, unpacked to "+image.HumanSize(budget.Used())+","); err != nil {
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
	if err := c.publish(src.Digest.String(), out, cfg, addSource(nil, src.Repo), room); err != nil {
		return nil, err
	}
	// Where the time went: the downloads run beside the applies; in an
	// apply, decompression and extraction run at once, and the waits say
	// which of the two held it up (layer.Times).
	c.log.Info("image pulled", "digest", src.Digest, "layers", len(layers),
		"apply", applied.Sub(start), "squash", time.Since(applied),
		"download", times.download.Sub(start), "decompress_wait", times.waitDecompress,
		"extract_wait", times.waitExtract, "decompressor", times.decompressor,
		"unpacked_bytes", times.unpacked)
	return nil, nil
}

// pullTimes is where a pull's time went, for its log line.
type pullTimes struct {
	download                    time.Time // the last layer's arrival
	waitDecompress, waitExtract time.Duration
	decompressor                string
	unpacked                    int64
}

// fetchAndApply downloads every distinct layer (up to parallelDownloads at
// once, bottom layers first) into work, and applies the layers onto rootfs
// in order as soon as each has arrived, their bytes taken from budget.
func (c *Cache) fetchAndApply(ctx context.Context, src *source.Source, layers []types.BlobInfo, work, rootfs string, budget *image.Budget, report func(Progress)) (pullTimes, error) {
	var times pullTimes
	var mu sync.Mutex
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
				mu.Lock()
				times.download = time.Now()
				mu.Unlock()
				close(ready[l.Digest])
				return nil
			})
		}
	}()
	var applyErr error
	for i, l := range layers {
		select {
		case <-ready[l.Digest]:
		case <-gctx.Done():
		}
		if gctx.Err() != nil {
			break
		}
		report(Progress{Phase: "downloading", Layer: l.Digest.String(), Message: fmt.Sprintf("applying layer %d of %d", i+1, len(layers))})
		t, err := layer.ApplyTimed(gctx, rootfs, blobPath(l.Digest), budget)
		times.waitDecompress += t.WaitDecompress
		times.waitExtract += t.WaitExtract
		times.unpacked += t.UncompressedBytes
		if times.decompressor == "" || times.decompressor == t.Decompressor {
			times.decompressor = t.Decompressor
		} else {
			times.decompressor = "mixed"
		}
		if err != nil {
			applyErr = fmt.Errorf("layer %d of %d (%s): %w", i+1, len(layers), l.Digest, err)
			cancel(applyErr)
			break
		}
		if lastUse[l.Digest] == i {
			_ = os.Remove(blobPath(l.Digest))
		}
	}
	werr := g.Wait()
	mu.Lock()
	defer mu.Unlock()
	switch {
	case applyErr != nil:
		return times, applyErr
	case werr != nil:
		return times, werr
	}
	return times, context.Cause(ctx)
}
