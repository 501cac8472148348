// Package source is image references and where images come from: it
// parses what a pyxis or enroot user writes (Parse), resolves it to one
// image for this machine's platform (a Source), and reads that image's
// blobs, checked against their digests.
//
// Where an image may come from:
//
//   - a registry (Resolver.Registry): short names through registries.conf
//     (aliases, one search registry; ambiguity is refused, ShortCandidates),
//     the user's own credentials (the "auths" of their auth.json, WriteAuth:
//     no credential helper runs as root, and root's credentials are never
//     read), retried while failures may pass;
//   - a local archive or OCI layout, a podman:// or dockerd:// store
//     (Resolver.Local): read as the user, through package asuser (a helper
//     process with their ids) or their own podman, into a root-owned copy
//     that containers/image then opens;
//   - a squashfs file: opened as the user (OpenAsUser), for the store to
//     copy and check.
//
// It promises: a path a user names is read with that user's permissions,
// never root's; policy.json (containers-policy.json(5)) is asked about
// every image (CheckPolicy, CheckFilePolicy, AllowedUnsigned), local ones
// under the name the user gave, not the daemon's copy; nothing a user
// names is parsed as root before it is copied out of their reach; what one
// image may make the node write is bounded (Options.MaxImageSize) and an
// export from a user's store ends at Options.HelperTimeout. Pin resolves a
// tag to a digest without a store (podman-hpcd resolve, as the user).
//
// The files, from the bottom up (each uses only those before it):
// asuser.go and resolver.go; errors.go and auth.go; ref.go, source.go,
// podman.go and dockerd.go; registry.go, policy.go and verify.go; local.go
// and pin.go.
//
// Errors wrap package image's sentinels; Classify turns one into the line
// the user sees. Programs using this package must call reexec.Init() from
// go.podman.io/storage/pkg/reexec first thing in main: podman:// runs
// podman under a re-executed copy of the program.
package source
