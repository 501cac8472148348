package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/types"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/layer"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// fetchAndStream makes the squashfs out straight from the layers: they
// are downloaded top layer first into work, merged by layer.Stream as
// each arrives, and squashed by tar2sqfs as they are read, with nothing
// extracted to disk. The squashfs's room in the cache grows with what was
// fed to it. It returns the blobs it downloaded, which stay in work: on
// layer.ErrNeedsExtraction the caller applies them by extraction.
func (c *Cache) fetchAndStream(ctx context.Context, src *source.Source, layers []types.BlobInfo, work, out string, budget *image.Budget, room *reservation, report func(Progress)) (pullTimes, map[digest.Digest]bool, error) {
	times := pullTimes{squasher: "tar2sqfs"}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	top := make([]types.BlobInfo, len(layers))
	for i, l := range layers {
		top[len(layers)-1-i] = l
	}
	dl := c.startDownloads(ctx, src, top, work, nil, report)
	have := func() map[digest.Digest]bool {
		h := map[digest.Digest]bool{}
		for d, ch := range dl.ready {
			select {
			case <-ch:
				h[d] = true
			default:
			}
		}
		return h
	}
	w, err := c.t2s.Start(dl.ctx, out)
	if err != nil {
		cancel(err)
		dl.wait()
		return times, nil, err
	}
	next := func(i int) (string, error) {
		l := layers[i]
		if err := dl.await(l.Digest); err != nil {
			return "", err
		}
		report(Progress{Phase: "downloading", Layer: l.Digest.String(), Message: fmt.Sprintf("squashing layer %d of %d", i+1, len(layers))})
		return workBlob(work, l.Digest), nil
	}
	fed := &roomWriter{w: w, room: room}
	t, err := layer.Stream(dl.ctx, len(layers), next, fed, budget)
	times.Add(t)
	times.applied = time.Now()
	if err == nil {
		report(Progress{Phase: "squashing", Message: c.t2s.Comp.Name})
		err = w.Close()
	} else {
		w.Abort()
	}
	if err != nil && !errors.Is(err, layer.ErrNeedsExtraction) {
		cancel(err)
	}
	// (Handed to extraction, the downloads in flight go on: it needs
	// their blobs.)
	werr := dl.wait()
	times.download = dl.last
	if err == nil {
		err = werr
	}
	if err == nil {
		err = context.Cause(ctx)
	}
	return times, have(), err
}

// roomWriter grows a pull's room in the cache ahead of what it passes on:
// a squashfs writer cannot write more than squashBound of what it read.
type roomWriter struct {
	w         io.Writer
	room      *reservation
	fed, held int64
}

// roomStep is how far ahead of the stream the room grows, so that the
// cache's lock is taken every few dozen megabytes, not at every write.
const roomStep = 64 << 20

func (r *roomWriter) Write(p []byte) (int, error) {
	r.fed += int64(len(p))
	if need := squashBound(r.fed); need > r.held {
		what := "the image, unpacked to " + image.HumanSize(r.fed) + " so far,"
		r.held = need + roomStep
		if r.room.grow(r.held, what) != nil {
			// Near the cache's size: no step ahead.
			if err := r.room.grow(need, what); err != nil {
				return 0, err
			}
			r.held = need
		}
	}
	return r.w.Write(p)
}
