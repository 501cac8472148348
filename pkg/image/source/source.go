package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	ciimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/pkg/blobinfocache/none"
	"go.podman.io/image/v5/types"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// Source is an image resolved to one single-platform manifest, ready to
// pull (Resolver.Registry, Resolver.Local). It may be shared (by the
// request that resolved it and a pull it leads): each holder calls
// Release once, and the last one closes it. Its methods are safe for
// concurrent use.
type Source struct {
	res      *Resolver
	src      types.ImageSource
	unparsed *ciimage.UnparsedImage // the platform's image (an instance of a list, or the top level)
	// Digest is the digest of the platform's image manifest: the key
	// the image is known by.
	Digest   digest.Digest
	sys      *types.SystemContext
	registry string // for messages; "" for local images
	// Repo is the registry repository (HOST/NAME) the user named, as
	// registries.conf resolved it (its mirrors are the admin's); "" for
	// local images.
	Repo string
	// policyRef is the name policy.json judges a local image by: what
	// the user named, not the daemon's copy (nil: unparsed's own).
	policyRef types.ImageReference

	mu      sync.Mutex
	holders int
	cleanup []func()
}

// Acquire adds a holder, who must call Release.
func (s *Source) Acquire() {
	s.mu.Lock()
	s.holders++
	s.mu.Unlock()
}

// Release drops a holder; the last one closes the source and removes
// what it copied.
func (s *Source) Release() {
	s.mu.Lock()
	s.holders--
	last := s.holders == 0
	s.mu.Unlock()
	if last {
		s.src.Close()
		for _, f := range s.cleanup {
			f()
		}
	}
}

// Image is the source's image, with its layers' and config's descriptors.
func (s *Source) Image(ctx context.Context) (types.Image, error) {
	return ciimage.FromUnparsedImage(ctx, s.sys, s.unparsed)
}

// Download fetches one blob of the source into the file dst (created
// 0600, or truncated) and verifies its digest (image.ErrDigestMismatch),
// reporting its progress as phase "downloading". A connection that
// delivers nothing for RegistryTimeout is given up; a failure that may
// pass is retried from scratch.
func (s *Source) Download(ctx context.Context, info types.BlobInfo, dst string, report func(image.Progress)) error {
	return s.res.retryBlob(ctx, func(ctx context.Context) error {
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := s.fetchBlob(ctx, info, f, report); err != nil {
			return err
		}
		return f.Close()
	})
}

// fetchBlob copies one blob of s to w, once, and verifies its digest
// (ErrDigestMismatch), reporting progress. A connection that delivers
// nothing for RegistryTimeout is given up.
func (s *Source) fetchBlob(ctx context.Context, info types.BlobInfo, w io.Writer, report func(image.Progress)) error {
	if err := info.Digest.Validate(); err != nil {
		return fmt.Errorf("%w: %v", image.ErrUnsupported, err)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Said before the first byte: a download that never starts is one in
	// progress too (status lists it).
	report(image.Progress{Phase: "downloading", Layer: info.Digest.String(), Total: info.Size})
	rc, size, err := s.src.GetBlob(ctx, info, none.NoCache)
	if s.Repo != "" && BlobUnknown(err) {
		// (The caller names the layer.)
		return fmt.Errorf("%w: the repository %s does not have it: pull it from the repository it was pushed to, or push its layers there", image.ErrIncompleteImage, s.Repo)
	}
	if s.Repo == "" && errors.Is(err, fs.ErrNotExist) {
		// A local image whose manifest names a blob it does not hold.
		return fmt.Errorf("%w: the archive lacks the image's layer %s: a manifest alone does not give the image; make the image (or its file or layout) again", image.ErrIncompleteImage, info.Digest)
	}
	if err != nil {
		return err
	}
	defer rc.Close()
	if size < 0 {
		size = info.Size
	}
	dg := info.Digest.Algorithm().Digester()
	// A blob may not be longer than the manifest says: a hostile source
	// (a device node in a local archive, a broken registry) could
	// otherwise stream until the disk is full.
	var body io.Reader = rc
	if info.Size >= 0 {
		body = io.LimitReader(rc, info.Size+1)
	}
	pr := &progressReader{r: body, report: report, layer: info.Digest.String(), total: size}
	stall := time.AfterFunc(s.res.o.RegistryTimeout, func() {
		cancel(fmt.Errorf("%w: no data for %s", image.ErrRegistryUnreachable, s.res.o.RegistryTimeout))
	})
	defer stall.Stop()
	pr.onRead = func() { stall.Reset(s.res.o.RegistryTimeout) }
	n, err := io.Copy(io.MultiWriter(w, dg.Hash()), pr)
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if err != nil {
		return err
	}
	if info.Size >= 0 && n > info.Size {
		return fmt.Errorf("%w: more than the %d bytes the manifest says", image.ErrDigestMismatch, info.Size)
	}
	if got := dg.Digest(); got != info.Digest {
		return fmt.Errorf("%w: got %s (%d bytes)", image.ErrDigestMismatch, got, n)
	}
	pr.final()
	return nil
}

// retryBlob is retry without the per-attempt deadline: a big layer
// takes as long as it takes; stalls are caught by fetchBlob.
func (rs *Resolver) retryBlob(ctx context.Context, fn func(context.Context) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = fn(ctx)
		if err == nil || errors.Is(err, image.ErrDigestMismatch) || !Transient(err) || attempt >= rs.o.RegistryAttempts || ctx.Err() != nil {
			return err
		}
		rs.o.Log.Warn("layer download failed, retrying", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(rs.o.RetryDelay * time.Duration(attempt)):
		}
	}
}

// progressReader reports download progress at most every 100 ms.
type progressReader struct {
	r      io.Reader
	report func(image.Progress)
	layer  string
	total  int64
	done   int64
	last   time.Time
	onRead func()
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.done += int64(n)
	if n > 0 && p.onRead != nil {
		p.onRead()
	}
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.report(image.Progress{Phase: "downloading", Layer: p.layer, Done: p.done, Total: p.total})
	}
	return n, err
}

func (p *progressReader) final() {
	p.report(image.Progress{Phase: "downloading", Layer: p.layer, Done: p.done, Total: p.total})
}
