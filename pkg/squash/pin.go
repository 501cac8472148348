package squash

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
)

// PinOptions configure Pin, which resolves a tag without a Cache: the
// plugin's helper runs it as the user on the submit host.
type PinOptions struct {
	// RegistriesConf and RegistriesConfDir as in Options.
	RegistriesConf, RegistriesConfDir string
	// AuthJSON is the user's auth.json (nil: anonymous). As in the daemon,
	// only its "auths" are used: credential helpers are not run, so that a
	// tag resolves alike wherever it is asked.
	AuthJSON []byte
	// RegistryTimeout and RegistryAttempts as in Options.
	RegistryTimeout  time.Duration
	RegistryAttempts int
}

// Pin returns ref pinned to the digest its tag names now, for this
// machine's platform, as "NAME:TAG@sha256:..." (a form Get accepts and
// pulls by digest), asking the registry. A digest reference comes back as
// it is; a reference that names no registry image (a path, oci:, ...)
// gives "", nil: there is nothing to pin. The error is one line naming
// ref, as Get's.
func Pin(ctx context.Context, ref string, o PinOptions) (string, error) {
	r, err := parseReference(ref)
	if err != nil {
		return "", classify("resolve", ref, "", err)
	}
	if r.kind != kindRegistry {
		return "", nil
	}
	// A directory of the caller's own (0700): the credentials' copy and the
	// short-name alias file containers/image looks for go there, not into
	// a /tmp where another user could have put an alias file first.
	tmp, err := os.MkdirTemp("", "podman-hpc-resolve-")
	if err != nil {
		return "", classify("resolve", ref, "", err)
	}
	defer os.RemoveAll(tmp)
	// The system's registries.conf and .d, never ones under the user's
	// $HOME (which may be unreadable, and is not the site's word).
	regConf, regDir := o.RegistriesConf, o.RegistriesConfDir
	if regConf == "" {
		regConf = systemRegistriesConf
	}
	if regDir == "" {
		regDir = systemRegistriesConfDir
	}
	c := &Cache{o: Options{RegistriesConf: regConf, RegistriesConfDir: regDir},
		registryTimeout: o.RegistryTimeout, registryAttempts: o.RegistryAttempts,
		retryDelay: 500 * time.Millisecond, tmp: tmp}
	if c.registryTimeout <= 0 {
		c.registryTimeout = 20 * time.Second
	}
	if c.registryAttempts <= 0 {
		c.registryAttempts = 3
	}
	authFile, dropped, removeAuth, err := c.writeAuth(o.AuthJSON)
	if err != nil {
		return "", classify("resolve", ref, "", err)
	}
	defer removeAuth()
	sys := c.sysContext(authFile)
	// The caller's own scratch directory for containers/image's blob-info
	// cache, not one under a $HOME that may be unreadable.
	sys.BlobInfoCacheDir = tmp
	named, host, err := c.pinName(ctx, sys, r)
	if err != nil {
		if dropped {
			err = &helpersError{err}
		}
		err = classify("resolve", ref, host, err)
		if dropped && !strings.Contains(err.Error(), helpersNote) {
			return "", fmt.Errorf("%w (note: %s)", err, helpersNote)
		}
		return "", err
	}
	return named, nil
}

// pinName resolves r (a registry reference) to NAME[:TAG]@DIGEST; host is
// the registry, for messages.
func (c *Cache) pinName(ctx context.Context, sys *types.SystemContext, r imageRef) (string, string, error) {
	named := r.named
	if r.short {
		var err error
		if named, err = shortCandidates(sys, r.shortName); err != nil {
			return "", "", err
		}
	}
	host := reference.Domain(named)
	if _, ok := named.(reference.Canonical); ok {
		return named.String(), host, nil
	}
	src, err := c.resolveRegistry(ctx, sys, named)
	if err != nil {
		var he *hostError
		if errors.As(err, &he) {
			host = he.host
		}
		return "", host, err
	}
	defer src.release()
	tagged, ok := named.(reference.NamedTagged)
	if !ok {
		return "", host, errors.New("no tag to pin")
	}
	// NAME:TAG@DIGEST keeps the tag for the user's eyes; parseReference
	// keeps only the digest.
	return tagged.String() + "@" + src.digest.String(), host, nil
}

// PinFor is Pin done by the daemon for a user: with their auth.json (read
// by the caller as the user; nil: anonymous), and, when the registry
// cannot be reached, what the tag last resolved to for that user in this
// cache (with a warning in the log).
func (c *Cache) PinFor(ctx context.Context, ref string, o PullOptions) (string, error) {
	r, err := parseReference(ref)
	if err != nil {
		return "", classify("resolve", ref, "", err)
	}
	if r.kind != kindRegistry {
		return "", nil
	}
	authFile, _, removeAuth, err := c.writeAuth(o.AuthJSON)
	if err != nil {
		return "", classify("resolve", ref, "", err)
	}
	defer removeAuth()
	sys := c.sysContext(authFile)
	pinnedName, host, err := c.pinName(ctx, sys, r)
	if err != nil && transient(err) && !r.short {
		if img := c.fallback("docker://"+r.named.String(), o.UID, err); img != nil {
			if tagged, ok := r.named.(reference.NamedTagged); ok {
				return tagged.String() + "@" + img.Digest, nil
			}
		}
	}
	if err != nil {
		return "", classify("resolve", ref, host, err)
	}
	return pinnedName, nil
}

// noteJobTagLocked records, for uid only, the tag of a pinned reference
// (NAME:TAG@DIGEST, as a job runs it) as one of uid's names of d, so that
// podman-hpcd images shows it and rmi NAME:TAG finds it. The pin came from
// the job's environment, which the user controls: the name is theirs
// alone (it is never marked as resolved by a registry, so it serves nobody
// within tag_ttl), and only their own claims on other digests move.
func (c *Cache) noteJobTagLocked(d string, r imageRef, uid uint32) {
	if r.kind != kindRegistry || r.short {
		return
	}
	if _, ok := r.named.(reference.Canonical); !ok {
		return
	}
	parsed, err := reference.ParseNormalizedNamed(strings.TrimPrefix(r.input, "docker://"))
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
