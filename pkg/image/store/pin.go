package store

import (
	"context"

	"go.podman.io/image/v5/docker/reference"

	"github.com/podman-hpc/podman-hpc/pkg/image/source"
)

// PinFor is Pin done by the daemon for a user: with their auth.json (read
// by the caller as the user; nil: anonymous), and, when the registry
// cannot be reached, what the tag last resolved to for that user in this
// cache (with a warning in the log).
func (c *Cache) PinFor(ctx context.Context, ref string, o PullOptions) (string, error) {
	r, err := source.Parse(ref)
	if err != nil {
		return "", source.Classify("resolve", ref, "", err)
	}
	if r.Kind != source.KindRegistry {
		return "", nil
	}
	authFile, _, removeAuth, err := c.src.WriteAuth(o.AuthJSON)
	if err != nil {
		return "", source.Classify("resolve", ref, "", err)
	}
	defer removeAuth()
	sys := c.src.SysContext(authFile)
	pinnedName, host, err := c.src.PinName(ctx, sys, r)
	if err != nil && source.Transient(err) && !r.Short {
		if img := c.fallback("docker://"+r.Named.String(), o.UID, err); img != nil {
			if tagged, ok := r.Named.(reference.NamedTagged); ok {
				return tagged.String() + "@" + img.Digest, nil
			}
		}
	}
	if err != nil {
		return "", source.Classify("resolve", ref, host, err)
	}
	return pinnedName, nil
}
