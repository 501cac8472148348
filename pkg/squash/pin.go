package squash

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/types"
)

// PinOptions configure Pin, which resolves a tag without a Cache: the
// plugin's helper runs it as the user on the submit host.
type PinOptions struct {
	// RegistriesConf and RegistriesConfDir as in Options.
	RegistriesConf, RegistriesConfDir string
	// AuthFile is the user's own auth.json ("": anonymous). Pin runs as
	// the user, so credential helpers it names run as them too.
	AuthFile string
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
	c := &Cache{o: Options{RegistriesConf: o.RegistriesConf, RegistriesConfDir: o.RegistriesConfDir},
		registryTimeout: o.RegistryTimeout, registryAttempts: o.RegistryAttempts,
		retryDelay: 500 * time.Millisecond, tmp: os.TempDir()}
	if c.registryTimeout <= 0 {
		c.registryTimeout = 20 * time.Second
	}
	if c.registryAttempts <= 0 {
		c.registryAttempts = 3
	}
	sys := c.sysContext(o.AuthFile)
	if o.AuthFile == "" {
		// No file of the user's: anonymous, as for the daemon.
		sys.AuthFilePath = filepath.Join(os.TempDir(), "podman-hpc-no-auth.json")
	}
	named, host, err := c.pinName(ctx, sys, r)
	if err != nil {
		return "", classify("resolve", ref, host, err)
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
