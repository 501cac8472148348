// Package squashfs builds squashfs images and checks them before the
// kernel parses one.
//
// Building: Mksquashfs runs mksquashfs as a binary (a compressor the
// kernel mounts, ParseCompression; a bound on the file it writes), and
// SquashTree squashes a directory a user owns (a running container's root)
// with that user's credentials, in a sandbox of its own, so that nothing
// in the tree can make it read what its owner could not.
//
// Checking: Check reads a squashfs file that a user gave (the daemon's own
// copy of it) and refuses one the kernel should not parse, or that holds
// what no image may: a superblock that does not add up, tables unsquashfs
// cannot walk, device nodes, trusted.* xattrs (which steer overlayfs).
//
// The files, from the bottom up: mksquashfs.go and superblock.go; tree.go
// and content.go; check.go.
//
// Errors wrap package image's sentinels: ErrNotSquashfs, ErrUnsafeFile,
// ErrTooLarge (a bound passed), ErrNoSpace. The package needs
// squashfs-tools 4.5 or later, and imports only package image of this
// module.
package squashfs
