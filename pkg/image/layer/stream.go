package layer

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// Stream writes the union of an image's layers to w as one tar stream,
// each path once, as it stands in the final image: what a squashfs writer
// that reads tar (tar2sqfs) turns into the image without anything
// extracted to disk. Blobs come from next, top layer first: next(i) is
// the path of layer i's blob (i counts down from n-1 to 0), and may wait
// for its download. Each entry is checked as Apply's scanner checks it,
// and its uncompressed bytes are taken from budget, every layer's entries
// whether kept or not. The error wraps image.ErrUnsafeLayer (a refused
// entry), image.ErrTooLarge, or ErrNeedsExtraction (the layers are fine,
// but must be applied by extraction to come out exactly as an extractor
// makes them: the caller does that instead).
func Stream(ctx context.Context, n int, next func(i int) (string, error), w io.Writer, budget *image.Budget) (Times, error) {
	start := time.Now()
	var t Times
	u := newUnion()
	tw := tar.NewWriter(w)
	buf := make([]byte, 256<<10)
	for i := n - 1; i >= 0; i-- {
		blob, err := next(i)
		if err != nil {
			return t, err
		}
		u.startLayer(i)
		lt, err := streamLayer(ctx, u, blob, tw, budget, buf)
		t.Add(lt)
		if err != nil {
			return t, fmt.Errorf("layer %d of %d: %w", i+1, n, err)
		}
		if err := u.endLayer(); err != nil {
			return t, fmt.Errorf("layer %d of %d: %w", i+1, n, err)
		}
	}
	if err := u.finish(); err != nil {
		return t, err
	}
	// Given explicitly: the writer would make those that hold entries
	// alike, but not those that only held a whiteout.
	for _, d := range u.implicitDirs() {
		h := &tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: start, Format: tar.FormatPAX}
		if err := tw.WriteHeader(h); err != nil {
			return t, err
		}
	}
	if err := tw.Close(); err != nil {
		return t, err
	}
	t.Total = time.Since(start)
	return t, nil
}

// streamLayer passes one layer's kept entries to tw.
func streamLayer(ctx context.Context, u *union, blob string, tw *tar.Writer, budget *image.Budget, buf []byte) (t Times, err error) {
	plain, name, err := openBlob(blob)
	if err != nil {
		return t, err
	}
	defer plain.Close()
	t.Decompressor = name
	in := &timedReader{r: budget.Reader(plain)}
	out := &timedWriter{w: tw}
	defer func() { t.WaitDecompress, t.WaitExtract, t.UncompressedBytes = in.wait, out.wait, in.n }()
	return t, streamTar(ctx, u, in, tw, out, buf)
}

// streamTar passes the kept entries of the tar stream in to tw; out (tw's
// writer) times the writes of the bodies.
func streamTar(ctx context.Context, u *union, in io.Reader, tw *tar.Writer, out io.Writer, buf []byte) error {
	tr := tar.NewReader(in)
	for {
		if err := context.Cause(ctx); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			// Padding after the end-of-archive blocks counts too.
			_, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{in}, buf)
			return err
		}
		if err != nil {
			return readError(err)
		}
		name, keep, err := u.next(h)
		if err != nil {
			return err
		}
		if !keep {
			continue
		}
		oh := outHeader(h, name)
		if err := tw.WriteHeader(oh); err != nil {
			return err
		}
		if oh.Typeflag == tar.TypeReg {
			if _, err := io.CopyBuffer(out, struct{ io.Reader }{tr}, buf); err != nil {
				return readError(err)
			}
		}
	}
}

// readError says where a read failed: the tar, the decompressor or the
// budget (errors.Is still finds image.ErrTooLarge).
func readError(err error) error { return fmt.Errorf("reading layer: %w", err) }

// outHeader is the header passed on for a kept entry: only what a
// squashfs holds (type, clean name, mode, owner, time, size, link target,
// user.* and security.* xattrs), so that the writer parses nothing of the
// layer's own.
func outHeader(h *tar.Header, name string) *tar.Header {
	o := &tar.Header{Typeflag: h.Typeflag, Name: name, Mode: h.Mode & 0o7777, Uid: h.Uid, Gid: h.Gid,
		ModTime: h.ModTime, Format: tar.FormatPAX}
	switch h.Typeflag {
	case tar.TypeReg:
		o.Size = h.Size
	case tar.TypeDir:
		o.Name += "/"
	case tar.TypeSymlink:
		o.Linkname = h.Linkname
	case tar.TypeLink:
		o.Linkname = path.Clean(strings.TrimLeft(h.Linkname, "/"))
	}
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.user.") || strings.HasPrefix(k, "SCHILY.xattr.security.") {
			if o.PAXRecords == nil {
				o.PAXRecords = map[string]string{}
			}
			o.PAXRecords[k] = v
		}
	}
	return o
}
