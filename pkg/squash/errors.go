package squash

import (
	"errors"
	"strings"
)

// Sentinel errors. Errors returned by this package wrap one of these where
// the cause is known, so callers can test with errors.Is; the text of the
// returned error is the one line a user sees in srun's output.
var (
	// ErrBadReference: the image reference cannot be parsed.
	ErrBadReference = errors.New("invalid image reference")
	// ErrShortName: a short name is ambiguous or matches no alias and no
	// search registry in registries.conf.
	ErrShortName = errors.New("short name not resolved")
	// ErrManifestUnknown: the registry has no such image or tag.
	ErrManifestUnknown = errors.New("manifest unknown")
	// ErrUnauthorized: the registry refused the credentials, or wants some.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrRegistryUnreachable: the registry did not answer in time.
	ErrRegistryUnreachable = errors.New("registry unreachable")
	// ErrDigestMismatch: downloaded content does not match its digest.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrPolicy: policy.json is missing, invalid, or rejects the image.
	ErrPolicy = errors.New("rejected by policy")
	// ErrUnsafeLayer: a layer holds a device node or an entry that
	// escapes the image root.
	ErrUnsafeLayer = errors.New("unsafe layer")
	// ErrUnsafeFile: a squashfs file given as an image holds a device
	// node, a setuid or setgid file, or a trusted.* or security.* xattr.
	ErrUnsafeFile = errors.New("unsafe squashfs file")
	// ErrNotSquashfs: a file given as an image is not a usable squashfs.
	ErrNotSquashfs = errors.New("not a usable squashfs image")
	// ErrTooLarge: the image is larger than Options.MaxImageSize.
	ErrTooLarge = errors.New("image too large")
	// ErrNoSpace: the cache's file system filled up.
	ErrNoSpace = errors.New("no space left on device")
	// ErrNotFound: no cached image matches (Pin, Remove).
	ErrNotFound = errors.New("image not in the cache")
	// ErrInUse: the image is pinned by a running container.
	ErrInUse = errors.New("image in use")
	// ErrPermission: the user may not read the file or act on the image.
	ErrPermission = errors.New("permission denied")
	// ErrLocked: another process has the cache directory open.
	ErrLocked = errors.New("cache directory in use by another process")
	// ErrNoImage: the local image store (podman://, dockerd://) has no
	// such image.
	ErrNoImage = errors.New("no such image")
	// ErrIncompleteImage: a local archive, layout or store export, or a
	// registry repository a cached image is not known by, names an image
	// but lacks some of its blobs, or holds other bytes under their names
	// (a manifest alone is not the image).
	ErrIncompleteImage = errors.New("incomplete image")
	// ErrUnsupported: the image uses a feature this package does not
	// handle (encrypted or foreign layers, unknown media types).
	ErrUnsupported = errors.New("unsupported image")
	// ErrHelperTimeout: a program run on a user's behalf (podman save for
	// podman://, the Docker daemon's export for dockerd://) ran past
	// Options.HelperTimeout and was stopped.
	ErrHelperTimeout = errors.New("stopped after its deadline")
)

// opError is what the user sees: `verb "ref": kind: detail: hint`, always
// on one line. kind is a sentinel above; cause (may be nil) is the
// underlying error kept for errors.Is/As and for logs.
type opError struct {
	verb, ref string
	kind      error
	detail    string
	hint      string
	cause     error
}

func (e *opError) Error() string {
	var b strings.Builder
	b.WriteString(e.verb)
	b.WriteString(` "`)
	b.WriteString(e.ref)
	b.WriteString(`": `)
	b.WriteString(e.kind.Error())
	if e.detail != "" {
		b.WriteString(": ")
		b.WriteString(e.detail)
	}
	if e.hint != "" {
		b.WriteString(": ")
		b.WriteString(e.hint)
	}
	return oneLine(b.String())
}

func (e *opError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

// oneLine folds the multi-line messages some libraries produce (registry
// error lists, policy errors) so that srun shows a single line.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	f := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range f {
		f[i] = strings.TrimSpace(f[i])
	}
	return strings.Join(f, "; ")
}
