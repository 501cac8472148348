// Package sif finds the root file system of an Apptainer (Singularity)
// SIF file a user names as an image: the squashfs partition that
// Apptainer mounts as the container's root. It reads the SIF's header and
// descriptors with Apptainer's own library (github.com/apptainer/sif/v2),
// after bounding what that library would allocate, and returns where the
// partition lies in the file; the caller copies those bytes into its cache
// and checks them as a squashfs file (package squashfs), so nothing here
// reads, or trusts, the partition's content.
//
// It promises: any bytes are taken without a panic or an allocation
// larger than a few MiB; a partition it returns lies within the size
// given; a SIF whose root is not squashfs, is encrypted, is only an
// overlay, carries an overlay partition, or is for another architecture,
// is refused with the reason. Signatures are not checked (the users'
// guide says why). Errors wrap package image's ErrNotSquashfs (not a
// usable SIF) or ErrUnsupported (a SIF of a kind we do not run).
package sif

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"runtime"

	"github.com/apptainer/sif/v2/pkg/sif"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// The global header's layout (SIF 01): a launch script, the magic, then
// fixed fields. We read only what bounds the library's allocation.
const (
	magicOffset = 32
	// descriptorsOffset is where DescriptorsTotal, DescriptorsOffset and
	// DescriptorsSize lie (int64s): after the launch script (32), magic
	// (10), version (3), arch (3), id (16) and three int64 times/counts.
	descriptorsTotalAt = 88
	headerSize         = 128
	// maxDescriptors bounds the descriptor table: the library allocates
	// it whole (about 585 bytes each) from the header's count before it
	// reads a byte of it. Apptainer makes 48; 4096 is 2.4 MiB.
	maxDescriptors = 4096
)

var magic = []byte("SIF_MAGIC\x00")

// Is reports whether r starts as a SIF file does (its magic at offset 32,
// after the launch script). A squashfs file starts with "hsqs".
func Is(r io.ReaderAt) bool {
	b := make([]byte, len(magic))
	_, err := r.ReadAt(b, magicOffset)
	return err == nil && bytes.Equal(b, magic)
}

// Root is where a SIF's root file system (its primary system partition,
// squashfs) lies in the file.
type Root struct {
	Offset, Size int64
	// Arch is the partition's architecture as Go names it ("amd64"), or
	// "unknown".
	Arch string
}

// FindRoot reads the SIF in r, whose size is size bytes (the caller's
// fstat: bytes past it are not read), and returns its primary system
// partition. r is only read.
func FindRoot(r io.ReaderAt, size int64) (Root, error) {
	corrupt := func(format string, a ...any) (Root, error) {
		return Root{}, fmt.Errorf("%w: SIF: %s", image.ErrNotSquashfs, fmt.Sprintf(format, a...))
	}
	unsupported := func(format string, a ...any) (Root, error) {
		return Root{}, fmt.Errorf("%w: SIF: %s", image.ErrUnsupported, fmt.Sprintf(format, a...))
	}
	if size < headerSize {
		return corrupt("too short for a SIF header (%d bytes)", size)
	}
	var t struct{ Total, Offset, Size int64 }
	if err := binary.Read(io.NewSectionReader(r, descriptorsTotalAt, 24), binary.LittleEndian, &t); err != nil {
		return corrupt("reading its header: %v", err)
	}
	if t.Total < 0 || t.Total > maxDescriptors {
		return corrupt("its header declares %d descriptors (at most %d)", t.Total, maxDescriptors)
	}
	if t.Offset < 0 || t.Size < 0 || t.Offset > size || t.Size > size-t.Offset {
		return corrupt("its descriptors (%d bytes at %d) lie outside the file (%d bytes)", t.Size, t.Offset, size)
	}
	f, err := sif.LoadContainer(readOnly{io.NewSectionReader(r, 0, size)}, sif.OptLoadWithCloseOnUnload(false))
	if err != nil {
		return corrupt("%v", err)
	}
	defer f.UnloadContainer()

	var prim []sif.Descriptor
	var others []string
	overlay := false
	f.WithDescriptors(func(d sif.Descriptor) bool {
		if d.DataType() != sif.DataPartition {
			return false
		}
		fs, pt, _, err := d.PartitionMetadata()
		if err != nil {
			return false
		}
		switch pt {
		case sif.PartPrimSys:
			prim = append(prim, d)
		case sif.PartOverlay:
			overlay = true
			others = append(others, fmt.Sprintf("an overlay (%s)", fs))
		default:
			others = append(others, fmt.Sprintf("a %s partition (%s)", pt, fs))
		}
		return false
	})
	switch {
	case len(prim) > 1:
		return corrupt("%d root file system partitions, where Apptainer takes one", len(prim))
	case len(prim) == 0 && len(others) > 0:
		return unsupported("no root file system partition, only %s: it is not an image Apptainer can run either", others[0])
	case len(prim) == 0:
		return corrupt("no root file system partition")
	}
	d := prim[0]
	fs, _, arch, err := d.PartitionMetadata()
	if err != nil {
		return corrupt("root partition: %v", err)
	}
	switch fs {
	case sif.FsSquash:
	case sif.FsEncryptedSquashfs, sif.FsGocryptfsSquashfs:
		return unsupported("its root file system is encrypted (apptainer build --encrypt), which is not decrypted here: build it without --encrypt, or use Apptainer")
	case sif.FsExt3:
		return unsupported("its root file system is ext3, not squashfs: convert it (apptainer build new.sif old.sif)")
	default:
		return unsupported("its root file system is %s, not squashfs", fs)
	}
	if overlay {
		return unsupported("it carries an overlay partition (apptainer overlay create), which Apptainer would mount over the root and this node does not: remove it (apptainer sif list, apptainer sif del ID FILE)")
	}
	off, n := d.Offset(), d.Size()
	if off < 0 || n <= 0 || off > size || n > size-off {
		return corrupt("its root partition (%d bytes at %d) lies outside the file (%d bytes)", n, off, size)
	}
	if arch != "unknown" && arch != runtime.GOARCH {
		return unsupported("its root file system is built for %s, and this node is %s", arch, runtime.GOARCH)
	}
	return Root{Offset: off, Size: n, Arch: arch}, nil
}

// readOnly is the library's ReadWriter over a reader: a write (the
// library never writes when it only loads) fails.
type readOnly struct{ io.ReaderAt }

var errReadOnly = errors.New("read-only")

func (readOnly) Write([]byte) (int, error)      { return 0, errReadOnly }
func (readOnly) Seek(int64, int) (int64, error) { return 0, errReadOnly }
func (readOnly) Truncate(int64) error           { return errReadOnly }
