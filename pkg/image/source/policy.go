package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.podman.io/image/v5/docker"
	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/signature"
	"go.podman.io/image/v5/types"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// policy.json (containers-policy.json(5)) decides every image handed out,
// on every Get, whatever the cache holds: a site that tightens its policy
// does not run what a laxer one let in.
//
//   - A registry image is checked against the registry's own manifest and
//     signatures, except where a cached copy is handed out without asking
//     the registry (within tag_ttl, a digest reference, or the registry out
//     of reach): then only if the policy accepts that reference unsigned;
//     where it wants signatures, the registry is asked after all.
//   - Local images (oci:, oci-archive:, docker-archive:) are checked under
//     their transport with the path the user named (for files: their real
//     path, as opened by the user), not the daemon's copy of them.
//   - A squashfs file has no transport in containers/image: the policy
//     knows it as transport "squashfs" (SquashfsTransport), with the
//     file's real path for scopes, as containers-policy.json(5) scopes
//     "dir" paths. A policy without a "squashfs" entry decides files by its
//     default; files carry no signatures, so only insecureAcceptAnything
//     lets one in.

// SquashfsTransport is the transport name policy.json uses for squashfs
// files a user names, e.g.
//
//	"transports": {"squashfs": {"/shared/images": [{"type": "insecureAcceptAnything"}]}}
const SquashfsTransport = "squashfs"

// loadPolicy reads policy.json afresh (an admin's edit applies at once).
func (rs *Resolver) loadPolicy() (*signature.PolicyContext, error) {
	p, err := signature.NewPolicyFromFile(rs.o.PolicyPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", image.ErrPolicy, rs.o.PolicyPath, err)
	}
	pc, err := signature.NewPolicyContext(p)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", image.ErrPolicy, rs.o.PolicyPath, err)
	}
	return pc, nil
}

// allowed applies the policy to img; the error wraps ErrPolicy.
func (rs *Resolver) allowed(ctx context.Context, img types.UnparsedImage) error {
	pc, err := rs.loadPolicy()
	if err != nil {
		return err
	}
	defer pc.Destroy() //nolint:errcheck // nothing to do about it
	if ok, err := pc.IsRunningImageAllowed(ctx, img); !ok || err != nil {
		if err == nil {
			err = errors.New("not allowed")
		}
		return fmt.Errorf("%w: %v", image.ErrPolicy, err)
	}
	return nil
}

// AllowedUnsigned says whether the policy lets the registry image name
// (docker://...) run with no signature and no manifest seen: what a
// cached copy handed out without asking the registry may be.
func (rs *Resolver) AllowedUnsigned(ctx context.Context, name string) bool {
	named, err := reference.ParseNormalizedNamed(strings.TrimPrefix(name, "docker://"))
	if err != nil {
		return false
	}
	ref, err := docker.NewReference(named)
	if err != nil {
		return false
	}
	return rs.allowed(ctx, unsignedImage{ref}) == nil
}

// CheckFilePolicy applies the policy to a squashfs file at its real path.
func (rs *Resolver) CheckFilePolicy(ctx context.Context, realPath string) error {
	return rs.allowed(ctx, unsignedImage{newPathRef(squashfsTransport{}, realPath, SquashfsTransport)})
}

// unsignedImage is an image the policy sees by name alone.
type unsignedImage struct{ ref types.ImageReference }

func (u unsignedImage) Reference() types.ImageReference { return u.ref }
func (u unsignedImage) Manifest(context.Context) ([]byte, string, error) {
	return nil, "", errors.New("no manifest: the image is judged by its name")
}
func (u unsignedImage) Signatures(context.Context) ([][]byte, error) { return nil, nil }

// namedAs is an image as the policy must see it: a local source opened
// from the daemon's copy, under the name the user gave.
type namedAs struct {
	types.UnparsedImage
	ref types.ImageReference
}

func (n namedAs) Reference() types.ImageReference { return n.ref }

// pathRef is a reference for policy lookups only: transport t, the
// policy identity path and its parent directories as namespaces (as
// containers/image's dir, oci and oci-archive transports scope paths).
// It cannot be opened.
type pathRef struct {
	t    types.ImageTransport
	path string
	name string // StringWithinTransport, for messages
}

func newPathRef(t types.ImageTransport, path, name string) pathRef {
	return pathRef{t: t, path: path, name: name}
}

func (r pathRef) Transport() types.ImageTransport  { return r.t }
func (r pathRef) StringWithinTransport() string    { return r.path }
func (r pathRef) DockerReference() reference.Named { return nil }
func (r pathRef) PolicyConfigurationIdentity() string {
	return r.path
}

func (r pathRef) PolicyConfigurationNamespaces() []string {
	var res []string
	for p := r.path; ; {
		i := strings.LastIndex(p, "/")
		// "/" itself is the transport's "" default.
		if i == -1 || p == "/" {
			return res
		}
		res = append(res, p)
		p = p[:i]
	}
}

var errPolicyOnly = errors.New("a policy reference cannot be opened")

func (r pathRef) NewImage(context.Context, *types.SystemContext) (types.ImageCloser, error) {
	return nil, errPolicyOnly
}

func (r pathRef) NewImageSource(context.Context, *types.SystemContext) (types.ImageSource, error) {
	return nil, errPolicyOnly
}

func (r pathRef) NewImageDestination(context.Context, *types.SystemContext) (types.ImageDestination, error) {
	return nil, errPolicyOnly
}

func (r pathRef) DeleteImage(context.Context, *types.SystemContext) error { return errPolicyOnly }

// squashfsTransport names squashfs files in policy.json.
type squashfsTransport struct{}

func (squashfsTransport) Name() string { return SquashfsTransport }
func (squashfsTransport) ParseReference(string) (types.ImageReference, error) {
	return nil, errPolicyOnly
}

func (squashfsTransport) ValidatePolicyConfigurationScope(scope string) error {
	if !strings.HasPrefix(scope, "/") {
		return fmt.Errorf("%q: a squashfs scope is an absolute path", scope)
	}
	return nil
}

// storeTransport names a local image store's images in policy.json with
// containers/image's transport names (containers-storage, docker-daemon),
// by the image's name as the user gave it.
type storeTransport string

func (t storeTransport) Name() string { return string(t) }
func (storeTransport) ParseReference(string) (types.ImageReference, error) {
	return nil, errPolicyOnly
}
func (storeTransport) ValidatePolicyConfigurationScope(string) error { return nil }

// fdPath is the path the kernel has for the open file f: the file the
// user opened, symlinks resolved.
func FDPath(f *os.File) (string, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", err
	}
	var p string
	var rerr error
	if err := rc.Control(func(fd uintptr) { p, rerr = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)) }); err != nil {
		return "", err
	}
	return p, rerr
}

// CheckPolicy applies policy.json to the image about to be run, on every
// Get: a tightened policy applies to cached images too.
func (rs *Resolver) CheckPolicy(ctx context.Context, s *Source) error {
	var img types.UnparsedImage = s.unparsed
	if s.policyRef != nil {
		img = namedAs{s.unparsed, s.policyRef}
	}
	return rs.allowed(ctx, img)
}
