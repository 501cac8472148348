package squashfs

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// superblock is the part of the squashfs 4.0 superblock we check.
type superblock struct {
	Magic       uint32
	Inodes      uint32
	MkfsTime    uint32
	BlockSize   uint32
	Fragments   uint32
	Compression uint16
	BlockLog    uint16
	Flags       uint16
	NoIDs       uint16
	Major       uint16
	Minor       uint16
	RootInode   uint64
	BytesUsed   uint64
	IDTable     uint64
	XattrTable  uint64
	InodeTable  uint64
	DirTable    uint64
	FragTable   uint64
	LookupTable uint64
}

const squashfsMagic = 0x73717368 // "hsqs" little-endian

// squashfsCompressors maps the superblock's compression id to the names
// in kernelCompressors; 2 (lzma) is missing: the kernel cannot mount it.
var squashfsCompressors = map[uint16]string{1: "gzip", 3: "lzo", 4: "xz", 5: "lz4", 6: "zstd"}

// readSuperblock reads and checks the superblock of the squashfs in r
// (size bytes): magic, version, a compression the kernel mounts, block
// size, and tables within the file. Errors wrap ErrNotSquashfs.
func readSuperblock(r io.ReaderAt, size int64) (superblock, error) {
	var sb superblock
	if err := binary.Read(io.NewSectionReader(r, 0, 96), binary.LittleEndian, &sb); err != nil {
		return sb, fmt.Errorf("%w: too short for a superblock (%d bytes)", image.ErrNotSquashfs, size)
	}
	switch {
	case sb.Magic != squashfsMagic:
		return sb, fmt.Errorf("%w: bad magic (not a squashfs file)", image.ErrNotSquashfs)
	case sb.Major != 4 || sb.Minor != 0:
		return sb, fmt.Errorf("%w: squashfs version %d.%d, the kernel reads 4.0", image.ErrNotSquashfs, sb.Major, sb.Minor)
	case squashfsCompressors[sb.Compression] == "":
		return sb, fmt.Errorf("%w: compression id %d cannot be mounted by the kernel", image.ErrNotSquashfs, sb.Compression)
	case sb.BlockSize < 4096 || sb.BlockSize > 1<<20 || sb.BlockSize != 1<<sb.BlockLog:
		return sb, fmt.Errorf("%w: corrupt superblock (block size %d)", image.ErrNotSquashfs, sb.BlockSize)
	case sb.BytesUsed > uint64(size):
		return sb, fmt.Errorf("%w: truncated: the superblock says %d bytes, the file has %d", image.ErrNotSquashfs, sb.BytesUsed, size)
	}
	for _, t := range []uint64{sb.InodeTable, sb.DirTable, sb.IDTable} {
		if t >= sb.BytesUsed {
			return sb, fmt.Errorf("%w: corrupt superblock (table beyond the end)", image.ErrNotSquashfs)
		}
	}
	return sb, nil
}
