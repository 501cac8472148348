package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/podman-hpc/podman-hpc/pkg/image"
	"github.com/podman-hpc/podman-hpc/pkg/image/sif"
	"github.com/podman-hpc/podman-hpc/pkg/image/source"
	"github.com/podman-hpc/podman-hpc/pkg/image/squashfs"
)

// A squashfs file a user names is never mounted where it lies: the kernel
// would parse an image the user can rewrite while it is mounted, and
// squashfs is not hardened against that. We copy it into the root-owned
// cache, keyed by the sha256 of its content (fileKey: apart from
// manifests' digests, right.go), and check the copy. A second
// use of the same unchanged file (same device, inode, size, mtime and
// ctime, which a user cannot set back) is not read again.
//
// A SIF file (Apptainer's) is read the same way: its header and
// descriptors, read from the same descriptor, say where its root
// partition lies (package sif), and only that partition's bytes are copied
// and checked, as a squashfs file of their own; the rest (the definition
// file, labels, signatures: Apptainer's build puts the first two in the
// squashfs too) is never read. A user who rewrites the file meanwhile gets
// whatever bytes the copy read, checked.

// GetFile returns the cached copy of the squashfs file f, copying and
// checking it first if this content is not cached yet. f must have been
// opened by the caller with the requesting user's permissions (the daemon
// must not open user paths as root); it is read from offset 0 with pread
// and not closed. The image's name is f.Name() when that is an absolute
// path. The policy decides the file by its real path (transport
// source.SquashfsTransport). Errors name the file and wrap package
// image's ErrPolicy, ErrTooLarge (larger than MaxImageSize), ErrUnsafeFile
// (a device node or a trusted.*
// xattr: checked on the root-owned
// copy that is then mounted: squashfs.Check) or ErrNotSquashfs for a file that is
// not a complete, kernel-mountable squashfs (bad magic, truncated,
// unreadable tables, lzma). A SIF file is the squashfs of its root
// partition (image Digest "sif:sha256:HEX", Config.Apptainer set); one
// whose root is not squashfs, or that is corrupt, fails with ErrUnsupported
// or ErrNotSquashfs and the reason.
func (c *Cache) GetFile(ctx context.Context, f *os.File, o PullOptions) (*Image, error) {
	name := ""
	if filepath.IsAbs(f.Name()) {
		name = filepath.Clean(f.Name())
	}
	return c.getFile(ctx, f.Name(), name, f, o)
}

func (c *Cache) getFile(ctx context.Context, input, name string, f *os.File, o PullOptions) (*Image, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, source.Classify("use", input, "", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, source.Classify("use", input, "", fmt.Errorf("%w: not a regular file", image.ErrNotSquashfs))
	}
	real, err := source.FDPath(f)
	if err != nil {
		return nil, source.Classify("use", input, "", err)
	}
	if err := c.src.CheckFilePolicy(ctx, real); err != nil {
		return nil, source.Classify("use", input, "", err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	id := fileID{dev: st.Dev, ino: st.Ino, size: fi.Size(), mtime: st.Mtim, ctime: st.Ctim}
	part := section{size: fi.Size()}
	if sif.Is(f) {
		root, err := sif.FindRoot(f, fi.Size())
		if err != nil {
			return nil, source.Classify("use", input, "", err)
		}
		part = section{off: root.Offset, size: root.Size, sif: true}
	}
	key := fmt.Sprintf("file\x00%d\x00%v", o.UID, id)
	img, err := c.flights.do(ctx, key, o.Progress, nil, func(ctx context.Context, report func(Progress)) (*Image, error) {
		return c.copyFile(ctx, id, name, f, part, o.UID, report)
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, source.Classify("use", input, "", err)
	}
	c.log.Info("squashfs file ready", "file", input, "uid", o.UID, "digest", img.Digest, "sif", part.sif)
	out := *img
	return &out, nil
}

// apptainerRunscript is what Apptainer's run runs, and a SIF image's
// entrypoint here.
const apptainerRunscript = "/.singularity.d/runscript"

// section is the part of a user's file that is the squashfs: all of it,
// or a SIF's root partition.
type section struct {
	off, size int64
	sif       bool
}

func (c *Cache) copyFile(ctx context.Context, id fileID, name string, f *os.File, part section, uid uint32, report func(Progress)) (*Image, error) {
	c.mu.Lock()
	if d, ok := c.files[id]; ok {
		if img := c.confirmLocked(d, name, uid, false, ""); img != nil {
			c.mu.Unlock()
			return img, nil
		}
	}
	c.mu.Unlock()

	if c.o.MaxImageSize > 0 && part.size > c.o.MaxImageSize {
		return nil, image.TooLarge("is", c.o.MaxImageSize)
	}
	release, err := c.slots.acquire(ctx, uid, report)
	if err != nil {
		return nil, err
	}
	defer release()
	room, err := c.reserve(part.size, "the file")
	if err != nil {
		return nil, err
	}
	defer room.release()
	report(Progress{Phase: "resolving", Message: "copying " + name})
	tmp, err := os.CreateTemp(c.images, ".new-*.squashfs")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name()) // a no-op once published
	defer tmp.Close()
	h := sha256.New()
	// Exactly the size we saw: the user may be appending meanwhile.
	n, err := io.Copy(io.MultiWriter(tmp, h), &ctxReader{ctx, io.NewSectionReader(f, part.off, part.size)})
	if err != nil {
		return nil, fmt.Errorf("copying: %w", err)
	}
	if n != part.size {
		return nil, fmt.Errorf("%w: the file shrank while it was copied", image.ErrNotSquashfs)
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	d, cfg := fileKey(h.Sum(nil)), ImageConfig{}
	if part.sif {
		d, cfg = sifKey(h.Sum(nil)), ImageConfig{Apptainer: true, Entrypoint: []string{apptainerRunscript}}
	}

	c.mu.Lock()
	if c.ix.Images[d] != nil {
		room.releaseLocked()
		c.files[id] = d
		img := c.confirmLocked(d, name, uid, false, "")
		c.mu.Unlock()
		return img, nil
	}
	c.mu.Unlock()
	if err := squashfs.Check(ctx, c.unsquashfs, tmp.Name()); err != nil {
		return nil, err
	}
	if err := c.publish(d, tmp.Name(), cfg, nil, room); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.files[id] = d
	img := c.confirmLocked(d, name, uid, false, "")
	if img == nil {
		return nil, fmt.Errorf("%w: evicted as soon as it was copied: the cache is too small for it", image.ErrNoSpace)
	}
	report(Progress{Phase: "done"})
	return img, nil
}

// ctxReader stops a long copy when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (r *ctxReader) Read(p []byte) (int, error) {
	if err := r.ctx.Err(); err != nil {
		return 0, context.Cause(r.ctx)
	}
	return r.r.Read(p)
}
