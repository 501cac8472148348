// Package image is what the image packages under it share: the sentinel
// errors each of them wraps (one var block, so that errors.Is works
// whichever package an error came from, and users see one vocabulary),
// the progress report of a pull, and the bound on what one image may write
// to disk (Budget, TooLarge: the node's max_image_size).
//
// The packages under it, from the bottom up:
//
//	squashfs  building a squashfs (mksquashfs) and checking one before
//	          the kernel parses it
//	layer     applying an image layer onto a root file system, refusing
//	          entries that would escape it
//	source    image references, and where images come from: registries
//	          (registries.conf, short names, credentials, policy.json),
//	          archives, OCI layouts, podman and Docker stores
//	store     the node's image store: the cache of squashfs images, its
//	          index and eviction, who is handed which image, the site
//	          image store shared by the nodes
//
// It imports nothing of this module's.
package image
