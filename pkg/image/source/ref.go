package source

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"go.podman.io/image/v5/docker/reference"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// Kind says where an image comes from.
type Kind int

const (
	KindRegistry      Kind = iota // a registry, possibly through a short name
	KindFile                      // a squashfs file
	KindOCILayout                 // oci:DIR[:NAME]
	KindOCIArchive                // oci-archive:FILE[:NAME]
	KindDockerArchive             // docker-archive:FILE[:REF|:@INDEX]
	KindPodman                    // podman://IMAGE: the user's own podman storage
	KindDockerd                   // dockerd://IMAGE: the node's Docker daemon
)

// storePrefixes are enroot's URIs for images in a local image store, read
// by that store's own tool or API on the user's behalf (podman.go,
// dockerd.go), never by root walking the store.
var storePrefixes = map[string]Kind{
	"podman://":  KindPodman,
	"dockerd://": KindDockerd,
}

// localPrefixes are the containers-transports(5) names accepted for local
// images. Every other transport is refused: the daemon runs as root, and
// dir:, containers-storage: or docker-daemon: would let a user read what
// root can.
var localPrefixes = map[string]Kind{
	"oci":            KindOCILayout,
	"oci-archive":    KindOCIArchive,
	"docker-archive": KindDockerArchive,
}

// otherTransports are transport names that are valid elsewhere in the
// containers tools; naming them gets a specific error rather than a
// confusing registry lookup of "dir/..." .
var otherTransports = map[string]bool{
	"dir": true, "containers-storage": true, "docker-daemon": true,
	"tarball": true, "sif": true, "ostree": true, "atomic": true,
}

// maxRefLen bounds what we parse: PATH_MAX, far above any image name
// (registries allow 255-byte repositories).
const maxRefLen = 4096

// Ref is a parsed image reference (Parse). Parsing never touches the file
// system or the network.
type Ref struct {
	Input string // as the user wrote it
	Kind  Kind

	// KindRegistry: Named is set, fully qualified with a tag or a digest,
	// unless Short is set, in which case ShortName must go through
	// registries.conf (ShortCandidates) first.
	Named     reference.Named
	Short     bool
	ShortName string
	User      string // enroot's USER@ credential hint; not used for lookup

	// Local kinds: the Path (absolute unless the user wrote a relative
	// one, which the caller resolves against the user's working
	// directory) and, for layouts and archives, the Image within it; for
	// podman:// and dockerd://, Image is the store's name for it (no
	// Path).
	Path  string
	Image string
}

// String is the canonical form: the key for deduplication and the name
// recorded in the index. Parsing it again gives the same Ref.
func (r Ref) String() string {
	switch r.Kind {
	case KindRegistry:
		if r.Short {
			return r.ShortName
		}
		return "docker://" + r.Named.String()
	case KindFile:
		return r.Path
	case KindPodman, KindDockerd:
		for p, k := range storePrefixes {
			if k == r.Kind {
				return p + r.Image
			}
		}
		return r.Image
	default:
		s := r.transport() + ":" + r.Path
		if r.Image != "" {
			s += ":" + r.Image
		}
		return s
	}
}

func (r Ref) transport() string {
	for name, k := range localPrefixes {
		if k == r.Kind {
			return name
		}
	}
	return "docker"
}

// Registry is the registry host of a fully qualified reference, "" else.
func (r Ref) Registry() string {
	if r.Named == nil {
		return ""
	}
	return reference.Domain(r.Named)
}

// Parse parses what a pyxis or enroot user writes:
//
//	IMAGE[:TAG], REGISTRY/IMAGE[:TAG], IMAGE@sha256:HEX
//	[USER@][REGISTRY#]IMAGE[:TAG]   (enroot; nvcr.io#nvidia/pytorch:24.01)
//	docker://ANY-OF-THE-ABOVE
//	oci:DIR[:NAME], oci-archive:FILE[:NAME], docker-archive:FILE[:REF]
//	podman://IMAGE, dockerd://IMAGE   (enroot: a local store's image)
//	/path/to/image.sqsh, ./image.sqsh   (a squashfs file)
//
// Names without a registry stay short names (short set) for registries.conf
// to resolve; with docker:// they mean Docker Hub, as in skopeo and enroot.
// A name without tag or digest gets ":latest"; one with both keeps the
// digest only, which is what names the content.
func Parse(s string) (Ref, error) {
	r := Ref{Input: s}
	bad := func(format string, a ...any) (Ref, error) {
		return Ref{}, &opError{verb: "parse", ref: s, kind: image.ErrBadReference, detail: fmt.Sprintf(format, a...)}
	}
	if s == "" {
		return bad("empty")
	}
	if len(s) > maxRefLen {
		return bad("longer than %d bytes", maxRefLen)
	}
	if strings.ContainsAny(s, "\x00\n\r") {
		return bad("contains a control character")
	}
	if s[0] == '/' || s[0] == '.' {
		r.Kind = KindFile
		r.Path = cleanPath(s)
		return r, nil
	}
	if rest, ok := strings.CutPrefix(s, "docker://"); ok {
		return parseRegistry(r, rest, true, bad)
	}
	for prefix, k := range storePrefixes {
		if rest, ok := strings.CutPrefix(s, prefix); ok {
			if err := checkStoreName(rest); err != nil {
				return bad("%s%s", prefix, err)
			}
			r.Kind, r.Image = k, rest
			return r, nil
		}
	}
	if name, rest, ok := strings.Cut(s, ":"); ok {
		if k, ok := localPrefixes[name]; ok {
			r.Kind = k
			p, img, _ := strings.Cut(rest, ":")
			if p == "" {
				return bad("%s: needs a path", name)
			}
			r.Path, r.Image = cleanPath(p), img
			return r, nil
		}
		// docker:TAG is the image named docker (docker:26.1.0-dind), as
		// under enroot: the docker transport is docker://.
		if otherTransports[name] || (name == "docker" && strings.HasPrefix(rest, "/")) {
			return bad("transport %q is not supported: use docker://, oci:, oci-archive: or docker-archive:", name)
		}
	}
	return parseRegistry(r, s, false, bad)
}

// parseRegistry handles the registry forms; hub says docker:// was given.
func parseRegistry(r Ref, s string, hub bool, bad func(string, ...any) (Ref, error)) (Ref, error) {
	r.Kind = KindRegistry
	registry := ""
	if left, right, ok := strings.Cut(s, "#"); ok {
		// enroot: [USER@]REGISTRY#IMAGE
		if strings.Contains(right, "#") {
			return bad("more than one '#'")
		}
		if i := strings.LastIndex(left, "@"); i >= 0 {
			r.User, left = left[:i], left[i+1:]
		}
		if left == "" || right == "" {
			return bad("REGISTRY#IMAGE needs both parts")
		}
		registry, s = left, left+"/"+right
	} else if user, rest, ok := strings.Cut(s, "@"); ok && !strings.ContainsAny(user, "/:") && !LooksLikeDigest(rest) {
		// enroot: USER@IMAGE (no registry); IMAGE@sha256:... is a digest.
		r.User, s = user, rest
	}
	if r.User != "" && strings.ContainsAny(r.User, "/:@#") {
		return bad("user %q in USER@ is not a user name", r.User)
	}

	parsed, err := reference.Parse(s)
	if err != nil {
		return bad("%v", err)
	}
	named, ok := parsed.(reference.Named)
	if !ok {
		return bad("no image name")
	}
	domain := reference.Domain(named)
	qualified := strings.ContainsAny(domain, ".:") || domain == "localhost"
	if registry != "" && !qualified {
		return bad("registry %q before '#' must be a host name with a dot or a port, or localhost", registry)
	}
	if !qualified && !hub {
		// Syntax check only; registries.conf decides what it means.
		if _, err := reference.ParseNormalizedNamed(s); err != nil {
			return bad("%v", err)
		}
		r.Short, r.ShortName = true, s
		return r, nil
	}
	full, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return bad("%v", err)
	}
	r.Named = Pinned(full)
	return r, nil
}

// Pinned returns named with ":latest" added when it has neither tag nor
// digest, and without its tag when it has both (containers/image refuses
// both; the digest is what identifies the content).
func Pinned(named reference.Named) reference.Named {
	if c, ok := named.(reference.Canonical); ok {
		if _, tagged := named.(reference.NamedTagged); tagged {
			if d, err := reference.WithDigest(reference.TrimNamed(named), c.Digest()); err == nil {
				return d
			}
		}
		return named
	}
	return reference.TagNameOnly(named)
}

// checkStoreName accepts what podman and docker name a local image by: a
// reference (NAME[:TAG][@DIGEST], short or not) or an image id (hex, as
// podman images and docker images print it). The name becomes an argument
// of the store's tool or part of a URL: nothing else gets through, and
// nothing that starts with '-'.
func checkStoreName(s string) error {
	if s == "" {
		return errors.New("IMAGE: needs an image name")
	}
	if isHexID(s) {
		return nil
	}
	if _, err := reference.Parse(s); err != nil {
		return fmt.Errorf("IMAGE %q: %v", s, err)
	}
	return nil
}

// isHexID: a (possibly shortened) image id, with or without "sha256:".
func isHexID(s string) bool {
	s = strings.TrimPrefix(s, "sha256:")
	if len(s) < 3 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// LooksLikeDigest: s is ALGORITHM:HEX with a digest algorithm a registry
// uses (sha256, sha384, sha512); the hex is not checked.
func LooksLikeDigest(s string) bool {
	alg, hex, ok := strings.Cut(s, ":")
	return ok && hex != "" && (alg == "sha256" || alg == "sha384" || alg == "sha512")
}

// cleanPath cleans p but keeps a relative path recognisable as a path
// ("./x", not "x", which would parse as an image name).
func cleanPath(p string) string {
	c := filepath.Clean(p)
	if !filepath.IsAbs(c) && !strings.HasPrefix(c, ".") {
		c = "./" + c
	}
	return c
}
