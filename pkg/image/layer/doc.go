// Package layer applies an image's layers, one by one, onto a root file
// system being built for a squashfs.
//
// Apply reads a layer blob (gzip, zstd or plain tar) once: a scanner in
// this process reads every tar header before the entry reaches
// containers/storage's extractor, which runs chrooted into the root in a
// re-executed copy of the program, and refuses the layer, naming the entry,
// when it holds what no image may: a device node, a path or hard link out
// of the root, a write through a symlink that leads out of it, a sparse
// file, a trusted.* xattr. Whiteouts, opaque directories, links, owners,
// modes and other xattrs are applied as in containers/storage.
//
// Programs using this package must call reexec.Init() from
// go.podman.io/storage/pkg/reexec first thing in main (and return if it
// returns true); ReexecReady says whether they did. Errors wrap package
// image's ErrUnsafeLayer (the refused entry) and ErrTooLarge (the image's
// budget used up). It imports only packages image and spawn of this
// module.
package layer
