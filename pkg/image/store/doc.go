// Package squash turns an image reference into a read-only squashfs on the
// node's local disk, once per image digest, in a cache that is shared by
// all users of the node, deduplicated and evicted.
//
// A Cache lives in one directory (Options.Dir, root-only):
//
//	index.json              what is cached, for whom, under which names
//	images/<hex>.squashfs   one image, named by its manifest digest
//	                        (a squashfs file given by a user:
//	                        squashfs-<hex>, its sha256)
//	images/<hex>.json       its ImageConfig
//	tmp/                    work in progress (Options.TmpDir)
//
// Get parses the reference (pyxis, enroot, docker:// and containers
// transports spellings), resolves short names through registries.conf,
// asks the registry for the manifest with the user's own credentials (the
// auths of their auth.json only: no credential helper runs as root),
// applies policy.json (to cached images and squashfs files too), then
// either hands out the cached image, once the user has shown the right to
// it (right.go: the registry's answer to their credentials, or every blob
// of it in their own archive), or pulls it, within the per-user
// limits (MaxPullsPerUser, MaxImageSize):
// layers download in parallel and are verified against their digests,
// each is applied in order (in a chrooted helper, after a header scan
// that refuses device nodes and paths out of the root) as soon as it has
// arrived, and mksquashfs builds the image, which is published by rename.
// Concurrent Gets share one download and one squash. A squashfs file a
// user names is copied into the cache and checked there (no device
// nodes, no trusted.* xattrs) before it is handed out.
//
// Programs using this package must call reexec.Init() from
// go.podman.io/storage/pkg/reexec first thing in main (and return if it
// returns true): layers are applied by re-executed copies of the program
// (containers/storage's chrootarchive). Open fails if they did not. Files
// a user names are read as the user through pkg/asuser.
//
// The daemon needs squashfs-tools 4.5 or later, a policy.json (there is
// no built-in default) and a registries.conf with the site's registries,
// mirrors, search registries and aliases.
package store
