package source

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

// PinOptions configure Pin, which resolves a tag without a cache: the
// plugin's helper runs it as the user on the submit host.
type PinOptions struct {
	// RegistriesConf and RegistriesConfDir as in Options ("": the
	// system's, never ones under the user's $HOME).
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
	r, err := Parse(ref)
	if err != nil {
		return "", Classify("resolve", ref, "", err)
	}
	if r.Kind != KindRegistry {
		return "", nil
	}
	// A directory of the caller's own (0700): the credentials' copy and the
	// short-name alias file containers/image looks for go there, not into
	// a /tmp where another user could have put an alias file first.
	tmp, err := os.MkdirTemp("", "podman-hpc-resolve-")
	if err != nil {
		return "", Classify("resolve", ref, "", err)
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
	rs := New(Options{RegistriesConf: regConf, RegistriesConfDir: regDir, TmpDir: tmp,
		RegistryTimeout: o.RegistryTimeout, RegistryAttempts: o.RegistryAttempts})
	authFile, dropped, removeAuth, err := rs.WriteAuth(o.AuthJSON)
	if err != nil {
		return "", Classify("resolve", ref, "", err)
	}
	defer removeAuth()
	sys := rs.SysContext(authFile)
	// The caller's own scratch directory for containers/image's blob-info
	// cache, not one under a $HOME that may be unreadable.
	sys.BlobInfoCacheDir = tmp
	named, host, err := rs.PinName(ctx, sys, r)
	if err != nil {
		if dropped {
			err = &HelpersError{err}
		}
		err = Classify("resolve", ref, host, err)
		if dropped && !strings.Contains(err.Error(), HelpersNote) {
			return "", fmt.Errorf("%w (note: %s)", err, HelpersNote)
		}
		return "", err
	}
	return named, nil
}

// PinName resolves r (a registry reference) to NAME[:TAG]@DIGEST, with
// the credentials of sys (SysContext's); host is the registry, for
// messages. A digest reference asks no registry.
func (rs *Resolver) PinName(ctx context.Context, sys *types.SystemContext, r Ref) (string, string, error) {
	named := r.Named
	if r.Short {
		var err error
		if named, err = ShortCandidates(sys, r.ShortName); err != nil {
			return "", "", err
		}
	}
	host := reference.Domain(named)
	if _, ok := named.(reference.Canonical); ok {
		return named.String(), host, nil
	}
	src, err := rs.Registry(ctx, sys, named)
	if err != nil {
		var he *HostError
		if errors.As(err, &he) {
			host = he.Host
		}
		return "", host, err
	}
	defer src.Release()
	tagged, ok := named.(reference.NamedTagged)
	if !ok {
		return "", host, errors.New("no tag to pin")
	}
	// NAME:TAG@DIGEST keeps the tag for the user's eyes; Parse
	// keeps only the digest.
	return tagged.String() + "@" + src.Digest.String(), host, nil
}
