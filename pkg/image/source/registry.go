package source

import (
	"context"
	"fmt"
	"strings"
	"time"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	ciimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	"go.podman.io/image/v5/pkg/shortnames"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// ShortCandidates resolves a short name through registries.conf: an alias,
// or the single unqualified-search registry. Several search registries
// make the name ambiguous: pulling the first that answers would let
// whoever controls that registry pick the image.
func ShortCandidates(sys *types.SystemContext, short string) (reference.Named, error) {
	res, err := shortnames.Resolve(sys, short)
	if regs, rerr := sysregistriesv2.UnqualifiedSearchRegistries(sys); rerr == nil && len(regs) == 0 &&
		(err != nil || len(res.PullCandidates) == 0) {
		// A registries.conf that names no search registry and no alias
		// for it: Docker Hub, as under enroot (redis:5.0.8 is
		// docker.io/library/redis:5.0.8).
		named, perr := reference.ParseNormalizedNamed(short)
		if perr != nil {
			return nil, &opError{verb: "pull", ref: short, kind: image.ErrBadReference, detail: perr.Error()}
		}
		return Pinned(named), nil
	}
	if err != nil {
		return nil, &opError{verb: "pull", ref: short, kind: image.ErrShortName, detail: err.Error(),
			hint: "use a fully qualified name (registry/name:tag), or ask your admin for an alias in registries.conf"}
	}
	if len(res.PullCandidates) != 1 {
		var names []string
		for _, pc := range res.PullCandidates {
			names = append(names, pc.Value.String())
		}
		return nil, &opError{verb: "pull", ref: short, kind: image.ErrShortName,
			detail: "ambiguous: it could be " + strings.Join(names, " or "),
			hint:   "use a fully qualified name"}
	}
	return Pinned(res.PullCandidates[0].Value), nil
}

// retry runs fn up to registryAttempts times, each bounded by
// registryTimeout, while it fails in a way that may pass (network errors,
// timeouts, 5xx, 429).
func (rs *Resolver) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, rs.o.RegistryTimeout)
		err = fn(actx)
		cancel()
		if err == nil || !Transient(err) || attempt >= rs.o.RegistryAttempts || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(rs.o.RetryDelay * time.Duration(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// Registry fetches named's manifest with the credentials of sys
// (SysContext's) and picks the image for this platform from a manifest
// list. Failures that may pass are retried (RegistryAttempts).
func (rs *Resolver) Registry(ctx context.Context, sys *types.SystemContext, named reference.Named) (*Source, error) {
	ref, err := docker.NewReference(named)
	if err != nil {
		return nil, err
	}
	var src types.ImageSource
	err = rs.retry(ctx, func(ctx context.Context) error {
		// For docker:// this already fetches the manifest (from the
		// first mirror that has it).
		s, err := ref.NewImageSource(ctx, sys)
		src = s
		return err
	})
	if err != nil {
		return nil, err
	}
	s := &Source{res: rs, src: src, sys: sys, registry: reference.Domain(named), Repo: reference.TrimNamed(named).Name(), holders: 1}
	if err := rs.pickInstance(ctx, s); err != nil {
		src.Close()
		return nil, err
	}
	return s, nil
}

// pickInstance sets s.unparsed and s.Digest: the top-level image, or the
// instance of a manifest list that matches this machine.
func (rs *Resolver) pickInstance(ctx context.Context, s *Source) error {
	top := ciimage.UnparsedInstance(s.src, nil)
	var raw []byte
	var mt string
	err := rs.retry(ctx, func(ctx context.Context) (err error) {
		raw, mt, err = top.Manifest(ctx) // checks a digest reference's digest
		return err
	})
	if err != nil {
		return err
	}
	s.unparsed = top
	if manifest.MIMETypeIsMultiImage(mt) {
		list, err := manifest.ListFromBlob(raw, mt)
		if err != nil {
			return err
		}
		d, err := list.ChooseInstance(s.sys)
		if err != nil {
			return fmt.Errorf("%w: %v", image.ErrUnsupported, err)
		}
		s.unparsed = ciimage.UnparsedInstance(s.src, &d)
		err = rs.retry(ctx, func(ctx context.Context) (err error) {
			raw, _, err = s.unparsed.Manifest(ctx)
			return err
		})
		if err != nil {
			return err
		}
	}
	s.Digest, err = manifest.Digest(raw)
	return err
}
