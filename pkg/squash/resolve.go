package squash

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/distribution/registry/api/errcode"
	v2 "github.com/docker/distribution/registry/api/v2"
	digest "github.com/opencontainers/go-digest"
	"go.podman.io/image/v5/docker"
	dockerarchive "go.podman.io/image/v5/docker/archive"
	"go.podman.io/image/v5/docker/reference"
	ciimage "go.podman.io/image/v5/image"
	"go.podman.io/image/v5/manifest"
	ociarchive "go.podman.io/image/v5/oci/archive"
	ocilayout "go.podman.io/image/v5/oci/layout"
	"go.podman.io/image/v5/pkg/shortnames"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// source is an image resolved to one single-platform manifest, ready to
// pull. It is shared by the Get that resolved it and, if that Get leads
// the download, by the pull; the last release closes it.
type source struct {
	src      types.ImageSource
	unparsed *ciimage.UnparsedImage // the platform's image (an instance of a list, or the top level)
	digest   digest.Digest          // of unparsed's manifest
	sys      *types.SystemContext
	registry string // for messages; "" for local images
	// repo is the registry repository (HOST/NAME) the user named, as
	// registries.conf resolved it (its mirrors are the admin's); "" for
	// local images.
	repo string
	// policyRef is the name policy.json judges a local image by: what
	// the user named, not the daemon's copy (nil: unparsed's own).
	policyRef types.ImageReference

	mu      sync.Mutex
	holders int
	cleanup []func()
}

func (s *source) acquire() {
	s.mu.Lock()
	s.holders++
	s.mu.Unlock()
}

func (s *source) release() {
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

// containers/image's system-wide configuration files.
const (
	systemRegistriesDir     = "/etc/containers/registries.d"
	systemRegistriesConf    = "/etc/containers/registries.conf"
	systemRegistriesConfDir = "/etc/containers/registries.conf.d"
)

// sysContext is the containers/image configuration for one request.
// authFile is always set: with no file of its own, containers/image would
// read root's credentials (~/.docker/config.json, ...) on behalf of users.
func (c *Cache) sysContext(authFile string) *types.SystemContext {
	// Disabled mode returns every candidate without prompting (a daemon
	// has no TTY); shortCandidates then refuses ambiguity itself.
	mode := types.ShortNameModeDisabled
	return &types.SystemContext{
		SystemRegistriesConfPath:    c.o.RegistriesConf,
		SystemRegistriesConfDirPath: c.o.RegistriesConfDir,
		SignaturePolicyPath:         c.policy,
		// The system's lookaside configuration, never one under $HOME:
		// the resolve helper runs as the user, whose home may be
		// unreadable (or theirs to fill), and root's has no say either.
		RegistriesDirPath: systemRegistriesDir,
		AuthFilePath:      authFile,
		ShortNameMode:     &mode,
		// Root's own alias cache has no say in users' short names.
		UserShortNameAliasConfPath: filepath.Join(c.tmp, "no-short-name-aliases.conf"),
		BigFilesTemporaryDir:       c.tmp,
		DockerRegistryUserAgent:    "podman-hpc",
	}
}

// shortCandidates resolves a short name through registries.conf: an alias,
// or the single unqualified-search registry. Several search registries
// make the name ambiguous: pulling the first that answers would let
// whoever controls that registry pick the image.
func shortCandidates(sys *types.SystemContext, short string) (reference.Named, error) {
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
		return pinned(named), nil
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
	return pinned(res.PullCandidates[0].Value), nil
}

// retry runs fn up to registryAttempts times, each bounded by
// registryTimeout, while it fails in a way that may pass (network errors,
// timeouts, 5xx, 429).
func (c *Cache) retry(ctx context.Context, fn func(ctx context.Context) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, c.registryTimeout)
		err = fn(actx)
		cancel()
		if err == nil || !transient(err) || attempt >= c.registryAttempts || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(c.retryDelay * time.Duration(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

func transient(err error) bool {
	var ne net.Error
	var ue docker.UnexpectedHTTPStatusError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, docker.ErrTooManyRequests):
		return true
	case errors.As(err, &ne):
		return true
	case errors.As(err, &ue):
		return ue.StatusCode >= 500
	}
	return false
}

// resolveRegistry fetches named's manifest with the user's credentials and
// picks the image for this platform from a manifest list.
func (c *Cache) resolveRegistry(ctx context.Context, sys *types.SystemContext, named reference.Named) (*source, error) {
	ref, err := docker.NewReference(named)
	if err != nil {
		return nil, err
	}
	var src types.ImageSource
	err = c.retry(ctx, func(ctx context.Context) error {
		// For docker:// this already fetches the manifest (from the
		// first mirror that has it).
		s, err := ref.NewImageSource(ctx, sys)
		src = s
		return err
	})
	if err != nil {
		return nil, err
	}
	s := &source{src: src, sys: sys, registry: reference.Domain(named), repo: reference.TrimNamed(named).Name(), holders: 1}
	if err := c.pickInstance(ctx, s); err != nil {
		src.Close()
		return nil, err
	}
	return s, nil
}

// pickInstance sets s.unparsed and s.digest: the top-level image, or the
// instance of a manifest list that matches this machine.
func (c *Cache) pickInstance(ctx context.Context, s *source) error {
	top := ciimage.UnparsedInstance(s.src, nil)
	var raw []byte
	var mt string
	err := c.retry(ctx, func(ctx context.Context) (err error) {
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
		err = c.retry(ctx, func(ctx context.Context) (err error) {
			raw, _, err = s.unparsed.Manifest(ctx)
			return err
		})
		if err != nil {
			return err
		}
	}
	s.digest, err = manifest.Digest(raw)
	return err
}

// resolveLocal makes a root-owned copy of a local layout or archive, read
// with the user's permissions (o's), and opens it with containers/image.
func (c *Cache) resolveLocal(ctx context.Context, sys *types.SystemContext, r imageRef, o PullOptions, report func(Progress)) (_ *source, err error) {
	cred := o.credential()
	work, err := os.MkdirTemp(c.tmp, "local-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.removeLater(work)
		}
	}()
	copyPath := filepath.Join(work, "image.tar")
	var policyRef types.ImageReference
	if r.kind == kindPodman || r.kind == kindDockerd {
		if policyRef, err = c.exportStore(ctx, r, cred, o.User, o.Home, copyPath, report); err != nil {
			return nil, err
		}
	} else if r.kind == kindOCILayout {
		if err := tarLayoutAsUser(ctx, r.path, cred, copyPath, c.o.MaxImageSize); err != nil {
			return nil, err
		}
		// The path as named: the helper resolves it as the user.
		policyRef = newPathRef(ocilayout.Transport, r.path, r.String())
	} else {
		real, err := copyAsUser(ctx, r.path, cred, copyPath, c.o.MaxImageSize)
		if err != nil {
			return nil, err
		}
		var t types.ImageTransport = ociarchive.Transport
		if r.kind == kindDockerArchive {
			t = dockerarchive.Transport
		}
		policyRef = newPathRef(t, real, r.String())
		if r.kind == kindOCIArchive {
			if err := checkArchive(copyPath); err != nil {
				return nil, err
			}
		}
	}
	var ref types.ImageReference
	within := copyPath
	// A store's export holds the one image it was asked for, tagged as
	// the store names it (localhost/app:1 for podman://app:1, or none for
	// an id): it is not looked up by the name given.
	if r.image != "" && r.kind != kindPodman && r.kind != kindDockerd {
		within += ":" + r.image
	}
	if r.kind == kindDockerArchive || r.kind == kindPodman || r.kind == kindDockerd {
		ref, err = dockerarchive.ParseReference(within)
	} else {
		ref, err = ociarchive.ParseReference(within)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", image.ErrBadReference, err)
	}
	src, err := ref.NewImageSource(ctx, sys)
	if err != nil {
		return nil, err
	}
	s := &source{src: src, sys: sys, holders: 1, policyRef: policyRef, cleanup: []func(){func() { c.removeLater(work) }}}
	if err := c.pickInstance(ctx, s); err != nil {
		src.Close()
		return nil, err
	}
	return s, nil
}

// exportStore writes r's image from its local store (podman://,
// dockerd://) as a docker-archive at out, read on cred's behalf (podman.go,
// dockerd.go), and returns the name policy.json judges it by: the store's
// transport (containers-storage, docker-daemon) and the image's name.
// The export is reported as phase "exporting" (status shows it) and ends
// at Options.HelperTimeout: what podman runs is the user's configuration's
// to decide (a storage.conf's mount_program is their own program), and it
// may never finish.
func (c *Cache) exportStore(ctx context.Context, r imageRef, cred credential, user, home, out string, report func(Progress)) (types.ImageReference, error) {
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	helper, transport := "podman save", "containers-storage"
	hint := "check what your containers configuration (~/.config/containers) makes podman run, or ask your admin"
	if r.kind == kindDockerd {
		helper, transport, hint = "the Docker daemon's export", "docker-daemon", "ask your admin"
	}
	limit := c.o.HelperTimeout
	ctx, cancel := context.WithTimeoutCause(ctx, limit, &opError{kind: image.ErrHelperTimeout,
		detail: fmt.Sprintf("%s ran longer than %s (the node's helper_timeout) and was stopped, with every process it started", helper, limit),
		hint:   hint})
	defer cancel()
	report(Progress{Phase: "exporting", Message: helper + " as uid " + strconv.FormatUint(uint64(cred.UID), 10)})
	if r.kind == kindPodman {
		err = exportPodman(ctx, c.o.Podman, r.image, cred, user, home, f, c.o.MaxImageSize)
	} else {
		err = exportDockerd(ctx, c.o.DockerSocket, r.image, cred, f, c.o.MaxImageSize)
	}
	if err != nil {
		return nil, err
	}
	return newPathRef(storeTransport(transport), r.image, r.String()), f.Close()
}

// checkArchive refuses an OCI archive holding anything but directories
// and regular files, before containers/image unpacks it as root: a device
// node or a FIFO where a blob should be would be read as the blob.
func checkArchive(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f) // f is an io.Seeker: bodies are skipped, not read
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: oci-archive: %v", image.ErrBadReference, err)
		}
		switch h.Typeflag {
		case tar.TypeReg, tar.TypeDir, tar.TypeXGlobalHeader:
		default:
			return fmt.Errorf("%w: oci-archive: %q is not a regular file or directory", image.ErrBadReference, h.Name)
		}
	}
}

// copyAsUser copies the regular file p, read as cred, to out (0600), and
// returns the real path of what it read; a file larger than limit (> 0)
// is refused with ErrTooLarge.
func copyAsUser(ctx context.Context, p string, cred credential, out string, limit int64) (string, error) {
	in, err := openAsUser(p, cred)
	if err != nil {
		return "", err
	}
	defer in.Close()
	real, err := fdPath(in)
	if err != nil {
		return "", err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	defer f.Close()
	// Counted as it is copied: the user may be growing the file.
	if _, err := io.Copy((&image.Budget{Limit: limit}).Writer(f), in); err != nil {
		if errors.Is(err, image.ErrTooLarge) {
			return "", image.TooLarge("is", limit)
		}
		return "", err
	}
	return real, f.Close()
}

// checkPolicy applies policy.json to the image about to be run, on every
// Get: a tightened policy applies to cached images too.
func (c *Cache) checkPolicy(ctx context.Context, s *source) error {
	var img types.UnparsedImage = s.unparsed
	if s.policyRef != nil {
		img = namedAs{s.unparsed, s.policyRef}
	}
	return c.allowed(ctx, img)
}

// classify turns an error from resolving or pulling ref into the one line
// the user sees, naming the cause and what to do.
func classify(verb, ref, registry string, err error) error {
	var oe *opError
	if errors.As(err, &oe) {
		oe.verb, oe.ref = verb, ref
		return oe
	}
	e := &opError{verb: verb, ref: ref, cause: err}
	regName := registry
	if regName == "" {
		regName = "the registry"
	} else {
		regName = "registry " + regName
	}
	var unauth docker.ErrUnauthorizedForCredentials
	var ec errcode.ErrorCoder
	var ue docker.UnexpectedHTTPStatusError
	switch {
	case errors.Is(err, image.ErrUnsafeLayer): // package layer's, naming the entry
		e.kind, e.detail, e.hint = image.ErrUnsafeLayer, err.Error(), "the image is refused"
	case errors.Is(err, image.ErrUnsafeFile):
		e.kind, e.detail, e.hint = image.ErrUnsafeFile, without(err, image.ErrUnsafeFile), "the file is refused"
	case errors.Is(err, image.ErrTooLarge):
		e.kind, e.detail, e.hint = image.ErrTooLarge, without(err, image.ErrTooLarge), "ask your admin"
	case errors.Is(err, image.ErrNoSpace) || errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), "no space left on device"):
		e.kind, e.hint = image.ErrNoSpace, "the node's image cache is full: ask your admin, or retry later"
	case errors.As(err, &unauth), errors.Is(err, image.ErrUnauthorized),
		errors.As(err, &ec) && (ec.ErrorCode() == errcode.ErrorCodeUnauthorized || ec.ErrorCode() == errcode.ErrorCodeDenied):
		e.kind, e.detail, e.hint = image.ErrUnauthorized, regName+" refused access", "check the credentials in your auth.json (podman login / docker login), and that you may pull this image"
		if errors.As(err, new(*helpersError)) {
			e.hint = helpersNote
		}
	case errors.As(err, &ec) && (ec.ErrorCode() == v2.ErrorCodeManifestUnknown || ec.ErrorCode() == v2.ErrorCodeNameUnknown),
		errors.As(err, &ue) && ue.StatusCode == 404,
		strings.Contains(err.Error(), "manifest unknown"):
		e.kind, e.hint = image.ErrManifestUnknown, "check the image name and tag"
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		e.kind, e.detail, e.hint = image.ErrRegistryUnreachable, regName+" speaks plain HTTP", "an admin must mark it insecure = true in registries.conf"
	case errors.Is(err, image.ErrRegistryUnreachable) || (registry != "" && transient(err)):
		e.kind, e.detail, e.hint = image.ErrRegistryUnreachable, regName+": "+netCause(err), "check the name and that the registry is up, then retry"
	case errors.Is(err, image.ErrPolicy):
		e.kind, e.detail, e.hint = image.ErrPolicy, strings.TrimSuffix(without(err, image.ErrPolicy), "."), "the site's containers-policy.json does not allow it: ask your admin"
	case errors.Is(err, image.ErrPermission):
		e.kind, e.detail, e.hint = image.ErrPermission, without(err, image.ErrPermission), "it is read with your permissions: make it readable by you"
	case errors.Is(err, image.ErrDigestMismatch):
		e.kind, e.detail, e.hint = image.ErrDigestMismatch, without(err, image.ErrDigestMismatch), "the registry or a proxy served corrupt data; retry, or tell the registry's admin"
	default:
		for _, k := range []error{image.ErrIncompleteImage, image.ErrNoImage, image.ErrPolicy, image.ErrShortName, image.ErrBadReference, image.ErrNotSquashfs, image.ErrPermission, image.ErrUnsupported, image.ErrNotFound, image.ErrInUse} {
			if errors.Is(err, k) {
				e.kind, e.detail = k, without(err, k)
				return e
			}
		}
		if errors.Is(err, os.ErrNotExist) {
			e.kind, e.detail, e.hint = os.ErrNotExist, err.Error(), "check the path"
			return e
		}
		if errors.Is(err, errNotRegular) {
			e.kind, e.detail = image.ErrBadReference, err.Error()
			return e
		}
		e.kind = errors.New("failed")
		e.detail = err.Error()
	}
	return e
}

// without is err's text minus the sentinel's, which opError prints first.
func without(err, kind error) string {
	s := strings.Replace(err.Error(), kind.Error()+": ", "", 1)
	if s == kind.Error() {
		return ""
	}
	return s
}

// netCause is the part of a network error a user can act on, without the
// layers of "fetching manifest ... pinging ... Get ..." around it.
func netCause(err error) string {
	var oe *net.OpError
	switch {
	case errors.Is(err, image.ErrRegistryUnreachable):
		return without(err, image.ErrRegistryUnreachable)
	case errors.As(err, &oe):
		return oe.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	}
	return err.Error()
}
