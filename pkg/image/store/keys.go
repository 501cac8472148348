package store

import (
	"encoding/hex"
	"slices"
	"strings"
	"syscall"
)

// The keys images are held under, in the index and in images/: a
// manifest's digest ("sha256:HEX"), or a squashfs file's sha256 in a space
// of its own ("squashfs:sha256:HEX", right.go says why; a SIF file's root
// partition: "sif:sha256:HEX", apart again, since its image is run with
// Apptainer's environment and runscript), and the repositories an image
// is known by.

// fileKeyPrefix starts the cache key (and the Image.Digest) of a squashfs
// file a user named: "squashfs:sha256:HEX".
const fileKeyPrefix = "squashfs:"

// sifKeyPrefix starts the key of a SIF file's root partition:
// "sif:sha256:HEX", the sha256 of the partition's bytes.
const sifKeyPrefix = "sif:"

// fileKey is the cache key of a squashfs file whose sha256 is sum.
func fileKey(sum []byte) string {
	return fileKeyPrefix + "sha256:" + hex.EncodeToString(sum)
}

// sifKey is the cache key of a SIF's root partition whose sha256 is sum.
func sifKey(sum []byte) string {
	return sifKeyPrefix + "sha256:" + hex.EncodeToString(sum)
}

func isFileKey(k string) bool {
	return strings.HasPrefix(k, fileKeyPrefix) || strings.HasPrefix(k, sifKeyPrefix)
}

// keyStem names a key's files in images/: HEX for a manifest (as before
// files had keys of their own), squashfs-HEX for a file, sif-HEX for a
// SIF's root.
func keyStem(k string) string {
	if rest, ok := strings.CutPrefix(k, fileKeyPrefix); ok {
		return "squashfs-" + digestHex(rest)
	}
	if rest, ok := strings.CutPrefix(k, sifKeyPrefix); ok {
		return "sif-" + digestHex(rest)
	}
	return digestHex(k)
}

// addSource returns the sorted set s with repo added.
func addSource(s []string, repo string) []string {
	i, found := slices.BinarySearch(s, repo)
	if found || repo == "" {
		return s
	}
	return slices.Insert(s, i, repo)
}

func digestHex(d string) string {
	_, hex, _ := strings.Cut(d, ":")
	return hex
}

// fileID identifies a file's content without reading it.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}
