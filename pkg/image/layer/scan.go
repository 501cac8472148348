package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// The layer scanner reads tar headers only (it extracts nothing) and
// refuses entries that a naive extractor would turn into an attack on the
// host: device nodes, paths that climb out of the root, writes or hard
// links through a symlink that points out of it, and trusted.* xattrs. The layer is applied by
// containers/storage inside a chroot, which already contains all of these;
// the scanner's job is to refuse the image with an error that names the
// entry, instead of quietly building a squashfs from a hostile layer.

// entryError is an unsafe entry; it wraps ErrUnsafeLayer.
type entryError struct {
	entry, reason string
}

func (e *entryError) Error() string { return fmt.Sprintf("entry %q: %s", e.entry, e.reason) }
func (e *entryError) Unwrap() error { return image.ErrUnsafeLayer }

// maxPathLen is Linux's PATH_MAX less its NUL.
const maxPathLen = 4095

// maxLinkHops bounds symlink resolution, like the kernel's 40.
const maxLinkHops = 40

// node is what the scanner knows about one path.
type node struct {
	gone   bool   // deleted by this layer (whiteout, or replaced by a non-directory)
	dir    bool   // a directory
	target string // symlink target; "" for anything else
	link   bool
}

// scanner tracks one layer over the rootfs of the layers below it.
type scanner struct {
	root   string          // rootfs with the lower layers applied
	layer  map[string]node // paths this layer has written or deleted
	opaque map[string]bool // directories this layer made opaque
	disk   map[string]node // cache of the rootfs, by path
	// tracked is the bytes of paths in layer and disk, against
	// maxTracked (union.go); work the bytes of paths looked up, against
	// maxScanWork.
	tracked, work int64
}

func newScanner(root string) *scanner {
	return &scanner{root: root, layer: map[string]node{}, opaque: map[string]bool{}, disk: map[string]node{}}
}

func escapes(p string) bool { return p == ".." || strings.HasPrefix(p, "../") }

// check refuses an unsafe header and records the entry's effect.
func (s *scanner) check(h *tar.Header) error {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if err := checkHeader(h); err != nil {
		return err
	}
	name := path.Clean(strings.TrimLeft(h.Name, "/"))
	if name == "." {
		return nil
	}
	dir, err := s.resolveDir(h.Name, path.Dir(name))
	if err != nil {
		return err
	}
	base := path.Base(name)
	if h.Typeflag == tar.TypeLink {
		ln := path.Clean(strings.TrimLeft(h.Linkname, "/"))
		if _, err := s.resolveDir(h.Name, path.Dir(ln)); err != nil {
			return err
		}
	}
	p := path.Join(dir, base)
	if err := track(&s.tracked, h.Name, p); err != nil {
		return err
	}
	switch {
	case base == ".wh..wh..opq":
		s.opaque[dir] = true
	case strings.HasPrefix(base, ".wh."):
		s.layer[path.Join(dir, strings.TrimPrefix(base, ".wh."))] = node{gone: true}
	case h.Typeflag == tar.TypeSymlink:
		s.layer[p] = node{link: true, target: h.Linkname}
	case h.Typeflag == tar.TypeDir:
		s.layer[p] = node{dir: true}
	default:
		s.layer[p] = node{}
	}
	return nil
}

// checkHeader refuses what no image may hold, whatever the layers around
// it: a device node, a sparse file, a path or hard link out of the root,
// a trusted.* xattr.
func checkHeader(h *tar.Header) error {
	switch h.Typeflag {
	case tar.TypeChar, tar.TypeBlock:
		kind := map[byte]string{tar.TypeChar: "character", tar.TypeBlock: "block"}[h.Typeflag]
		return &entryError{h.Name, fmt.Sprintf("is a %s device (%d,%d): images may not contain device nodes", kind, h.Devmajor, h.Devminor)}
	case tar.TypeGNUSparse:
		return &entryError{h.Name, "is a sparse file, which images may not contain"}
	}
	if escapes(path.Clean(strings.TrimLeft(h.Name, "/"))) {
		return &entryError{h.Name, "path leaves the image root"}
	}
	// Linux takes no longer path (PATH_MAX, with its NUL) or symlink
	// target: an extractor fails on it. Bounding it bounds how deep a
	// path is, and so what each entry costs to check.
	if len(h.Name) > maxPathLen || (h.Typeflag == tar.TypeSymlink || h.Typeflag == tar.TypeLink) && len(h.Linkname) > maxPathLen {
		return &entryError{h.Name, fmt.Sprintf("has a path or link target longer than %d bytes, which Linux does not take", maxPathLen)}
	}
	for k := range h.PAXRecords {
		// A sparse file's holes expand without bytes in the layer: a tiny
		// layer could make the scanner spin, and the extractor write,
		// exabytes of zeroes. No image builder writes them.
		if strings.HasPrefix(k, "GNU.sparse.") {
			return &entryError{h.Name, "is a sparse file, which images may not contain"}
		}
		// overlayfs obeys trusted.overlay.* on a lower layer: redirects,
		// opaque dirs and metacopy would let an image reach other paths
		// when the container is writable. No image needs any trusted.*
		// (only CAP_SYS_ADMIN may set them). Setuid bits and security.*
		// (file capabilities: ping) are kept, as in the registry's image:
		// images are mounted nosuid, which makes both inert.
		if strings.HasPrefix(k, "SCHILY.xattr.trusted.") {
			return &entryError{h.Name, fmt.Sprintf("carries xattr %q: images may not carry trusted.* xattrs", strings.TrimPrefix(k, "SCHILY.xattr."))}
		}
	}
	if h.Typeflag == tar.TypeLink && escapes(path.Clean(strings.TrimLeft(h.Linkname, "/"))) {
		return &entryError{h.Name, fmt.Sprintf("hard link to %q, outside the image root", h.Linkname)}
	}
	return nil
}

// resolveDir resolves directory d (clean, relative to the root) the way
// the chrooted extractor will, and refuses it if that goes through an
// absolute symlink or a relative one that climbs out of the root. It
// returns the resolved, symlink-free path.
func (s *scanner) resolveDir(entry, d string) (string, error) {
	if d == "." {
		return ".", nil
	}
	todo := strings.Split(d, "/")
	// hid: a parent of the next path was deleted or replaced by this
	// layer, or made opaque, which hides what the lower layers had below
	// it. Carried along the walk, so that each step looks at one path,
	// not at all its parents again.
	cur, hid := ".", false
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		if c == "." || c == "" {
			continue
		}
		p := path.Join(cur, c)
		if s.work += int64(len(p)); s.work > maxScanWork {
			return "", fmt.Errorf("%w: entry %q: the layer's paths take more than %d MiB of lookups to check (deep paths, or symlinks followed again and again)", image.ErrTooLarge, entry, maxScanWork>>20)
		}
		hid = hid || s.opaque[cur]
		n, inLayer := s.layer[p]
		switch {
		case inLayer:
		case hid:
			n = node{gone: true}
		default:
			n = s.onDisk(p)
		}
		if !n.link {
			hid = hid || inLayer && (n.gone || !n.dir)
			cur = p
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", &entryError{entry, "too many levels of symbolic links"}
		}
		if path.IsAbs(n.target) {
			return "", &entryError{entry, fmt.Sprintf("goes through absolute symlink %q -> %q, which a naive extractor follows out of the image root", p, n.target)}
		}
		t := path.Clean(path.Join(cur, n.target))
		if escapes(t) {
			return "", &entryError{entry, fmt.Sprintf("goes through symlink %q -> %q, which leaves the image root", p, n.target)}
		}
		todo = append(strings.Split(t, "/"), todo...)
		cur, hid = ".", false
	}
	return cur, nil
}

// maxScanWork bounds the bytes of paths one layer's scan looks up: a few
// megabytes of a layer, deep paths through symlinks, could otherwise
// keep the daemon busy for hours. An image of 50,000 files, ten deep,
// takes about 20 MiB. (A variable for tests.)
var maxScanWork int64 = 1 << 30

// onDisk looks p up in the rootfs one component at a time, never
// following a symlink, so a hostile lower layer cannot make the scanner
// itself look outside the root.
func (s *scanner) onDisk(p string) node {
	if n, ok := s.disk[p]; ok {
		return n
	}
	n := node{gone: true}
	if parent := path.Dir(p); parent == "." || s.onDisk(parent).dir {
		full := filepath.Join(s.root, filepath.FromSlash(p))
		if fi, err := os.Lstat(full); err == nil {
			n = node{dir: fi.IsDir()}
			if fi.Mode()&fs.ModeSymlink != 0 {
				if t, err := os.Readlink(full); err == nil {
					n.link, n.target = true, t
				}
			}
		}
	}
	s.disk[p] = n
	return n
}

// scanLayer copies the uncompressed layer src to w, passing on each
// entry's header only after the scanner accepted it: a refused entry never
// reaches the extractor. Bodies go straight through. It returns the
// scanner's refusal, or the first read or write error.
func scanLayer(s *scanner, src io.Reader, w io.Writer) error {
	rec := &recorder{r: src}
	tr := tar.NewReader(rec)
	buf := make([]byte, 256<<10)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if err := rec.flush(w); err != nil {
				return err
			}
			// Padding after the end-of-archive blocks. (The struct hides
			// pgzip's WriteTo, which panics when called after a partial
			// read.)
			_, err := io.Copy(w, struct{ io.Reader }{src})
			return err
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := s.check(h); err != nil {
			return err
		}
		if err := rec.flush(w); err != nil {
			return err
		}
		rec.direct = w
		for {
			_, rerr := tr.Read(buf)
			if rec.err != nil {
				return rec.err
			}
			if errors.Is(rerr, io.EOF) {
				break
			}
			if rerr != nil {
				return fmt.Errorf("reading tar: %w", rerr)
			}
		}
		rec.direct = nil
	}
}

// recorder remembers the raw bytes the tar reader consumes while it reads
// headers, so that they can be forwarded unchanged (PAX records, sparse
// maps and all) once vetted; while direct is set (file bodies) it forwards
// what it reads at once.
type recorder struct {
	r      io.Reader
	buf    []byte
	direct io.Writer
	err    error // from direct
}

func (r *recorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if r.direct != nil {
		if _, werr := r.direct.Write(p[:n]); werr != nil {
			r.err = werr
			return n, werr
		}
		return n, err
	}
	r.buf = append(r.buf, p[:n]...)
	return n, err
}

func (r *recorder) flush(w io.Writer) error {
	if len(r.buf) == 0 {
		return nil
	}
	_, err := w.Write(r.buf)
	r.buf = r.buf[:0]
	return err
}
