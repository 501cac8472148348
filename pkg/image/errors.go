package image

import "errors"

// Sentinel errors. Errors returned by the image packages (source, store,
// layer, squashfs) wrap one of these where the cause is known, so callers
// test with errors.Is whichever package it came from; the text of the
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
	// ErrRegistryFailing: the registry answered, but with an empty or
	// cut-short body.
	ErrRegistryFailing = errors.New("registry failing")
	// ErrDigestMismatch: downloaded content does not match its digest.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrPolicy: policy.json is missing, invalid, or rejects the image.
	ErrPolicy = errors.New("rejected by policy")
	// ErrUnsafeLayer: a layer holds a device node or an entry that
	// escapes the image root (package layer's errors, which name the
	// entry, are the only ones that wrap it).
	ErrUnsafeLayer = errors.New("unsafe layer")
	// ErrUnsafeFile: a squashfs file given as an image holds a device
	// node, a setuid or setgid file, or a trusted.* or security.* xattr.
	ErrUnsafeFile = errors.New("unsafe squashfs file")
	// ErrNotSquashfs: a file given as an image is not a usable squashfs.
	ErrNotSquashfs = errors.New("not a usable squashfs image")
	// ErrTooLarge: the image is larger than the node's max_image_size
	// (store.Options.MaxImageSize; TooLarge).
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
	// store.Options.HelperTimeout and was stopped.
	ErrHelperTimeout = errors.New("stopped after its deadline")
)
