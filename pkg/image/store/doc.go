// Package store is the node's image store: it turns an image reference
// into a read-only squashfs on the node's local disk, once per image
// digest, in a cache that is shared by all users of the node,
// deduplicated and evicted, and, with a site image store, shared by the
// nodes too.
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
// Get parses the reference and resolves it with the user's own
// credentials (package source: registries.conf, short names, auth.json,
// local archives and stores read as the user), applies policy.json (to
// cached images and squashfs files too), then either hands out the cached
// image, once the user has shown the right to it (right.go: the answer of
// a repository the image is known by, or every blob of it from their own
// source), or pulls it, within the per-user limits (MaxPullsPerUser,
// MaxImageSize): layers download in parallel and are verified against
// their digests, each is applied in order as soon as it has arrived
// (package layer), and mksquashfs builds the image (package squashfs),
// which is published by rename. Concurrent Gets share one download and
// one squash. A squashfs file a user names is copied into the cache and
// checked there (squashfs.Check) before it is handed out.
//
// It promises: a user is handed only images they have shown the right to
// (right.go); an image is in the index only once its files are whole, and
// a killed daemon leaves nothing Open does not clean; a pinned image is
// never evicted or removed; one user cannot make the node run more than
// MaxPullsPerUser pulls nor write more than MaxImageSize for one image.
//
// The files, from the bottom up (each uses only those before it):
// options.go and keys.go; index.go, flight.go and slots.go; shared.go (the
// site image store's files and locks); cache.go (the Cache, and what
// enters and leaves it); images.go, open.go, file.go, pull.go and
// right.go; pin.go and shared_pull.go; get.go.
//
// Programs using this package must call reexec.Init() from
// go.podman.io/storage/pkg/reexec first thing in main (and return if it
// returns true): layers are applied by re-executed copies of the program
// (package layer). Open fails if they did not.
//
// The daemon needs squashfs-tools 4.5 or later, a policy.json (there is
// no built-in default) and a registries.conf with the site's registries,
// mirrors, search registries and aliases.
package store
