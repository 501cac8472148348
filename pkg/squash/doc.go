// Package squash turns an image reference into a read-only squashfs on the
// node's local disk, once per image digest, with a shared, deduplicated and
// evicted cache. It is filled in by the image issue; until then it holds
// nothing, and the daemon refuses container requests with a clear error.
package squash
