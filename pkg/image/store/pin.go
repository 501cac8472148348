package store

import (
	"context"
	"strings"

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

// noteJobTagLocked records, for uid only, the tag of a pinned reference
// (NAME:TAG@DIGEST, as a job runs it) as one of uid's names of d, so that
// podman-hpcd images shows it and rmi NAME:TAG finds it. The pin came from
// the job's environment, which the user controls: the name is theirs
// alone (it is never marked as resolved by a registry, so it serves nobody
// within tag_ttl), and only their own claims on other digests move.
func (c *Cache) noteJobTagLocked(d string, r source.Ref, uid uint32) {
	if r.Kind != source.KindRegistry || r.Short {
		return
	}
	if _, ok := r.Named.(reference.Canonical); !ok {
		return
	}
	parsed, err := reference.ParseNormalizedNamed(strings.TrimPrefix(r.Input, "docker://"))
	if err != nil {
		return
	}
	tagged, ok := parsed.(reference.NamedTagged)
	if !ok {
		return
	}
	name := "docker://" + reference.TrimNamed(tagged).String() + ":" + tagged.Tag()
	e := c.ix.Images[d]
	if e == nil {
		return
	}
	for od, oe := range c.ix.Images {
		if or := oe.Refs[name]; or != nil && od != d {
			or.Users = removeUID(or.Users, uid)
			if len(or.Users) == 0 {
				delete(oe.Refs, name)
			}
		}
	}
	ru := e.Refs[name]
	if ru == nil {
		ru = &refUse{}
		e.Refs[name] = ru
	}
	if !hasUID(ru.Users, uid) {
		ru.Users = addUID(ru.Users, uid)
		if err := c.ix.save(c.dir); err != nil {
			c.log.Warn("cannot save the index", "err", err)
		}
	}
}
