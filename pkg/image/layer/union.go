package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"iter"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// The union is an image's layers merged without extracting them: read
// top layer first, an entry is kept unless a layer above it replaced it,
// deleted it (whiteout), hid it (opaque directory) or replaced one of its
// parents by a non-directory; whatever is kept is final, so it can go
// straight to a squashfs writer. What that order cannot reproduce exactly
// as an extractor would (a path written through a lower layer's symlink,
// a path twice in one layer, a hard link to a file a later layer
// replaced, a whiteout beside what it deletes in one layer) is reported
// as ErrNeedsExtraction, and the caller extracts the layers instead.

// ErrNeedsExtraction says the layers must be applied by extraction: the
// stream could not reproduce them exactly. It is not an error in the
// image.
var ErrNeedsExtraction = errors.New("the layers need extraction")

type needsExtraction struct{ entry, why string }

func (e *needsExtraction) Error() string {
	return fmt.Sprintf("%s: entry %q %s", ErrNeedsExtraction, e.entry, e.why)
}
func (e *needsExtraction) Unwrap() error { return ErrNeedsExtraction }

// maxNameLen is Linux's NAME_MAX.
const maxNameLen = 255

// maxDirEntries is how many entries a directory may get before the layers
// go to extraction: tar2sqfs adds an entry to a directory in time linear
// in the entries already there (20,000 entries in one directory took it
// 1.9 s, 100,000 took 41 s), where mksquashfs sorts.
const maxDirEntries = 16384

// maxTracked bounds the memory the merge (and the scanner) may hold for
// one image, counted as each path's bytes plus trackCost: about 2.5
// million entries of 100-byte paths. Layers of a few megabytes can name
// millions of paths, and this memory is the daemon's. (A variable for
// tests.)
var maxTracked int64 = 512 << 20

const trackCost = 100

// track counts path p against maxTracked, and refuses the image past it.
func track(tracked *int64, entry, p string) error {
	if *tracked += int64(len(p)) + trackCost; *tracked > maxTracked {
		return fmt.Errorf("%w: entry %q: the image names more paths than a pull keeps track of (%d MiB of them: millions of entries)", image.ErrTooLarge, entry, maxTracked>>20)
	}
	return nil
}

// kind is what a layer made of a path.
type kind uint8

const (
	isDir   kind = iota + 1
	isOther      // any non-directory
	isGone       // whited out
)

// written is an entry the union passed on.
type written struct {
	layer, seq int
	dir        bool
	attrs      string // a non-directory's mode, owner, time and xattrs
}

// hardLink is a hard link the union passed on, checked at the end.
type hardLink struct {
	name, target string
	layer, seq   int
	attrs        string
}

// attrs renders what an extractor sets on an inode from a header: a hard
// link's header sets them on the file it links to.
func attrs(h *tar.Header) string {
	var x []string
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			x = append(x, k+"="+v)
		}
	}
	sort.Strings(x)
	return fmt.Sprintf("%o %d:%d %d %q", h.Mode&0o7777, h.Uid, h.Gid, h.ModTime.Unix(), x)
}

// union merges layers given top first.
type union struct {
	above    map[string]kind    // paths the layers above the current one wrote or deleted
	opaque   map[string]bool    // directories the layers above made opaque
	out      map[string]written // entries passed on
	implicit map[string]bool    // parents of entries passed on, not passed on themselves
	links    []hardLink
	seq      int
	children map[string]int // entries passed on (or to be made) in each directory
	tracked  int64          // bytes of paths held, against maxTracked

	// The current layer.
	layer     int
	here      map[string]kind
	made      []string // directories an extractor makes for this layer's entries
	whiteouts []string
	opaques   []string
}

func newUnion() *union {
	return &union{above: map[string]kind{}, opaque: map[string]bool{}, out: map[string]written{},
		implicit: map[string]bool{}, here: map[string]kind{}, children: map[string]int{}}
}

// startLayer begins layer i (the bottom layer is 0); layers come top first.
func (u *union) startLayer(i int) { u.layer = i }

// next decides about one entry of the current layer: whether it is passed
// on, under which clean path (relative, "." for the root). An unsafe
// entry is an error wrapping image.ErrUnsafeLayer, whether kept or not.
func (u *union) next(h *tar.Header) (name string, keep bool, err error) {
	if h.Typeflag == tar.TypeXGlobalHeader {
		return "", false, nil
	}
	if err := checkHeader(h); err != nil {
		return "", false, err
	}
	u.seq++
	name = path.Clean(strings.TrimLeft(h.Name, "/"))
	for c := range strings.SplitSeq(name, "/") {
		if len(c) > maxNameLen {
			// An extractor fails on it (ENAMETOOLONG); tar2sqfs would
			// write a directory readers call corrupt.
			return "", false, &needsExtraction{h.Name, "has a name longer than 255 bytes"}
		}
	}
	switch h.Typeflag {
	// (archive/tar reads the old TypeRegA as TypeReg, or TypeDir.)
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo:
	default:
		return "", false, &needsExtraction{h.Name, fmt.Sprintf("has tar type %q", h.Typeflag)}
	}
	// Below something this layer made a non-directory: an extractor
	// writes through the symlink (or fails on the file).
	for a := path.Dir(name); a != "." && name != "."; a = path.Dir(a) {
		if u.here[a] == isOther {
			return "", false, &needsExtraction{h.Name, fmt.Sprintf("lies below %q, a non-directory of its own layer", a)}
		}
	}
	if base := path.Base(name); strings.HasPrefix(base, ".wh.") {
		dir := path.Dir(name)
		switch {
		case base == ".wh..wh..opq":
			u.opaques = append(u.opaques, dir)
		case len(base) > len(".wh.") && !strings.HasPrefix(base, ".wh..wh."):
			u.whiteouts = append(u.whiteouts, path.Join(dir, strings.TrimPrefix(base, ".wh.")))
		default:
			return "", false, &needsExtraction{h.Name, "is an unknown whiteout"}
		}
		if err := track(&u.tracked, h.Name, name); err != nil {
			return "", false, err
		}
		// An extractor makes the directory a whiteout is in.
		if dir != "." && !u.hidden(dir) {
			if err := u.needDir(h.Name, dir); err != nil {
				return "", false, err
			}
		}
		return "", false, nil
	}
	if _, dup := u.here[name]; dup {
		return "", false, &needsExtraction{h.Name, "appears twice in one layer"}
	}
	k := isOther
	if h.Typeflag == tar.TypeDir {
		k = isDir
	} else if name == "." {
		return "", false, &needsExtraction{h.Name, "is the root, and not a directory"}
	}
	u.here[name] = k
	if err := track(&u.tracked, h.Name, name); err != nil {
		return "", false, err
	}
	if u.hidden(name) {
		return name, false, nil
	}
	if k == isOther && u.implicit[name] {
		// A lower layer's symlink (or file) where an upper layer put
		// entries: the extractor wrote them through it.
		return "", false, &needsExtraction{h.Name, "is not a directory, and a layer above wrote below it"}
	}
	if h.Typeflag == tar.TypeLink {
		t := path.Clean(strings.TrimLeft(h.Linkname, "/"))
		if u.hidden(t) {
			return "", false, &needsExtraction{h.Name, fmt.Sprintf("is a hard link to %q, which a layer above replaced", h.Linkname)}
		}
		u.links = append(u.links, hardLink{name: name, target: t, layer: u.layer, seq: u.seq, attrs: attrs(h)})
	}
	if u.implicit[name] {
		// Counted in its directory when it was marked.
		delete(u.implicit, name)
		u.children[path.Dir(name)]--
	}
	if err := u.markParents(h.Name, name); err != nil {
		return "", false, err
	}
	w := written{layer: u.layer, seq: u.seq, dir: k == isDir}
	if !w.dir {
		w.attrs = attrs(h)
	}
	u.out[name] = w
	if err := u.addChild(h.Name, name); err != nil {
		return "", false, err
	}
	return name, true, nil
}

// markParents records p's parents that are not passed on as implicit:
// made by the squashfs writer, or at the end (implicitDirs).
func (u *union) markParents(entry, p string) error {
	for a := path.Dir(p); a != "." && p != "."; a = path.Dir(a) {
		if _, ok := u.out[a]; ok || u.implicit[a] {
			return nil
		}
		u.implicit[a] = true
		u.made = append(u.made, a)
		if err := u.addChild(entry, a); err != nil {
			return err
		}
	}
	return nil
}

// addChild counts p (not ".") in its directory, and hands the layers to
// extraction when that directory has more than maxDirEntries.
func (u *union) addChild(entry, p string) error {
	if p == "." {
		return nil
	}
	d := path.Dir(p)
	u.children[d]++
	if u.children[d] > maxDirEntries {
		return &needsExtraction{entry, fmt.Sprintf("makes %q a directory of more than %d entries, which tar2sqfs adds slowly", d, maxDirEntries)}
	}
	return nil
}

// needDir records that dir (not hidden) must be a directory of the image,
// made as an extractor makes a missing parent, unless a lower layer has it.
func (u *union) needDir(entry, dir string) error {
	if w, ok := u.out[dir]; ok {
		if !w.dir {
			return &needsExtraction{entry, fmt.Sprintf("lies below %q, which is not a directory", dir)}
		}
		return nil
	}
	if !u.implicit[dir] {
		u.implicit[dir] = true
		u.made = append(u.made, dir)
		if err := u.addChild(entry, dir); err != nil {
			return err
		}
	}
	return u.markParents(entry, dir)
}

// implicitDirs lists, parents first, the directories no layer gave an
// entry of their own: each is made as an extractor makes a missing
// parent (root's, 0755).
func (u *union) implicitDirs() []string {
	dirs := make([]string, 0, len(u.implicit))
	for d := range u.implicit {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	return dirs
}

// hidden says whether the layers above replaced, deleted or hid p.
func (u *union) hidden(p string) bool {
	if _, ok := u.above[p]; ok {
		return true
	}
	if p == "." {
		return false
	}
	for a := path.Dir(p); ; a = path.Dir(a) {
		if u.opaque[a] {
			return true
		}
		if a == "." {
			return false
		}
		if k := u.above[a]; k == isOther || k == isGone {
			return true
		}
	}
}

// endLayer applies the current layer's whiteouts, opaque directories and
// entries to the layers below it.
func (u *union) endLayer() error {
	if len(u.whiteouts) > 0 {
		gone := map[string]bool{}
		for _, w := range u.whiteouts {
			gone[w] = true
		}
		made := slices.Values(u.made)
		for p := range iterUnion(maps.Keys(u.here), made) {
			for a := p; ; a = path.Dir(a) {
				if gone[a] {
					return &needsExtraction{p, fmt.Sprintf("shares its layer with a whiteout of %q", a)}
				}
				if a == "." {
					break
				}
			}
		}
	}
	for p, k := range u.here {
		if _, ok := u.above[p]; !ok {
			u.above[p] = k
		}
	}
	for _, w := range u.whiteouts {
		if _, ok := u.above[w]; !ok {
			u.above[w] = isGone
		}
	}
	for _, d := range u.opaques {
		u.opaque[d] = true
	}
	u.here, u.made, u.whiteouts, u.opaques = map[string]kind{}, nil, nil, nil
	return nil
}

// finish checks, once every layer is in, that each hard link passed on
// names the file it named when its layer was applied.
func (u *union) finish() error {
	for _, l := range u.links {
		t, ok := u.out[l.target]
		switch {
		case !ok || t.dir:
			return &needsExtraction{l.name, fmt.Sprintf("is a hard link to %q, which the image does not hold as a file", l.target)}
		case t.layer > l.layer || t.layer == l.layer && t.seq > l.seq:
			return &needsExtraction{l.name, fmt.Sprintf("is a hard link to %q, which was written after it", l.target)}
		case t.attrs != l.attrs:
			// An extractor gives the file the link's mode, owner and
			// time; the squashfs writer keeps the file's.
			return &needsExtraction{l.name, fmt.Sprintf("is a hard link to %q with other attributes", l.target)}
		}
	}
	return nil
}

// iterUnion yields what a yields, then what b yields.
func iterUnion(a, b iter.Seq[string]) iter.Seq[string] {
	return func(yield func(string) bool) {
		for p := range a {
			if !yield(p) {
				return
			}
		}
		for p := range b {
			if !yield(p) {
				return
			}
		}
	}
}
