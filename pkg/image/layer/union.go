package layer

import (
	"archive/tar"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// The union is an image's layers merged without extracting them: read
// top layer first, an entry is kept unless a layer above it replaced it,
// deleted it (whiteout), hid it (opaque directory) or replaced one of its
// parents by a non-directory; whatever is kept is final, so it can go
// straight to a squashfs writer. It keeps a tree of the paths it has
// seen, one node a path component, so that an entry costs time in its
// path's length, however deep: a map of whole paths, asked about each
// parent, cost a few KB layer of 6,000 nested directories minutes. What that order cannot reproduce exactly
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

// trackCost is what the union holds for a path besides its name: its
// node in the tree, and its place in its parent's map.
const trackCost = 200

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
	attrs      inodeAttrs // a non-directory's
}

// hardLink is a hard link the union passed on, checked at the end.
type hardLink struct {
	name       string
	node       *pathNode
	target     *pathNode
	layer, seq int
	attrs      inodeAttrs
	targetName string
}

// inodeAttrs is what an extractor sets on an inode from a header: a hard
// link's header sets them on the file it links to.
type inodeAttrs struct {
	mode, mtime int64
	uid, gid    int
	xattrs      string // "" without xattrs, as most entries are
}

func attrs(h *tar.Header) inodeAttrs {
	a := inodeAttrs{mode: h.Mode & 0o7777, mtime: h.ModTime.Unix(), uid: h.Uid, gid: h.Gid}
	var x []string
	for k, v := range h.PAXRecords {
		if strings.HasPrefix(k, "SCHILY.xattr.") {
			x = append(x, k+"="+v)
		}
	}
	if len(x) > 0 {
		sort.Strings(x)
		a.xattrs = fmt.Sprintf("%q", x)
	}
	return a
}

// pathNode is what the union knows of one path.
type pathNode struct {
	comp     string // its last component ("." for the root)
	parent   *pathNode
	children map[string]*pathNode
	above    kind     // what the layers above the current one made of it
	opaque   bool     // a layer above made it opaque
	here     kind     // the current layer's entry at it
	gone     bool     // the current layer whites it out
	opaqued  bool     // the current layer makes it opaque
	out      *written // passed on
	implicit bool     // a directory made for what is below it, not passed on itself
	entries  int      // entries passed on (or to be made) in it

	// An extractor writes below a path through whatever it is then: a
	// lower layer's symlink there sends an upper layer's writes
	// elsewhere, unless something between them replaced it. Layer
	// indices (bottom 0), noLayer for none: the lowest layer that wrote
	// below it, and the lowest layer that replaced it (an entry at it, a
	// whiteout of it or of a parent) or emptied it (an opaque parent).
	writtenBelow, replaced, emptied int
}

// noLayer is above every layer.
const noLayer = int(^uint(0) >> 1)

// path is n's clean path from the root.
func (n *pathNode) path() string {
	if n.parent == nil {
		return "."
	}
	var comps []string
	for ; n.parent != nil; n = n.parent {
		comps = append(comps, n.comp)
	}
	var b strings.Builder
	for i := len(comps) - 1; i >= 0; i-- {
		b.WriteString(comps[i])
		if i > 0 {
			b.WriteByte('/')
		}
	}
	return b.String()
}

// union merges layers given top first.
type union struct {
	root      *pathNode
	links     []hardLink
	implicits []*pathNode // every node ever made implicit
	seq       int
	tracked   int64 // bytes held for paths, against maxTracked

	// The current layer.
	layer     int
	here      []*pathNode // its entries
	made      []*pathNode // directories an extractor makes for its entries
	whiteouts []*pathNode
	opaques   []*pathNode
}

func newUnion() *union {
	return &union{root: &pathNode{comp: ".", writtenBelow: noLayer, replaced: noLayer, emptied: noLayer}}
}

// startLayer begins layer i (the bottom layer is 0); layers come top first.
func (u *union) startLayer(i int) { u.layer = i }

// walk returns the nodes from the root to clean path p, made as needed
// (and counted against maxTracked).
func (u *union) walk(entry, p string) ([]*pathNode, error) {
	ns := []*pathNode{u.root}
	if p == "." {
		return ns, nil
	}
	n := u.root
	for c := range strings.SplitSeq(p, "/") {
		child := n.children[c]
		if child == nil {
			if err := track(&u.tracked, entry, c); err != nil {
				return nil, err
			}
			if n.children == nil {
				n.children = map[string]*pathNode{}
			}
			child = &pathNode{comp: c, parent: n, writtenBelow: noLayer, replaced: noLayer, emptied: noLayer}
			n.children[c] = child
		}
		n = child
		ns = append(ns, n)
	}
	return ns, nil
}

// hidden says whether the layers above replaced, deleted or hid the last
// of ns (a walk).
func hidden(ns []*pathNode) bool {
	if ns[len(ns)-1].above != 0 {
		return true
	}
	for i, a := range ns[:len(ns)-1] {
		if a.opaque || i > 0 && (a.above == isOther || a.above == isGone) {
			return true
		}
	}
	return false
}

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
	ns, err := u.walk(h.Name, name)
	if err != nil {
		return "", false, err
	}
	// Below something this layer made a non-directory: an extractor
	// writes through the symlink (or fails on the file).
	for i := 1; i < len(ns)-1; i++ {
		if a := ns[i]; a.here == isOther {
			return "", false, &needsExtraction{h.Name, fmt.Sprintf("lies below %q, a non-directory of its own layer", a.path())}
		}
	}
	u.wroteBelow(ns)
	leaf := ns[len(ns)-1]
	if base := leaf.comp; strings.HasPrefix(base, ".wh.") {
		dir := ns[len(ns)-2]
		switch {
		case base == ".wh..wh..opq":
			u.opaques = append(u.opaques, dir)
			dir.opaqued = true
		case len(base) > len(".wh.") && !strings.HasPrefix(base, ".wh..wh."):
			gone, err := u.walk(h.Name, path.Join(path.Dir(name), strings.TrimPrefix(base, ".wh.")))
			if err != nil {
				return "", false, err
			}
			g := gone[len(gone)-1]
			g.gone = true
			u.whiteouts = append(u.whiteouts, g)
		default:
			return "", false, &needsExtraction{h.Name, "is an unknown whiteout"}
		}
		// An extractor makes the directory a whiteout is in.
		if dir != u.root && !hidden(ns[:len(ns)-1]) {
			if err := u.needDir(h.Name, ns[:len(ns)-1]); err != nil {
				return "", false, err
			}
		}
		return "", false, nil
	}
	if leaf.here != 0 {
		return "", false, &needsExtraction{h.Name, "appears twice in one layer"}
	}
	k := isOther
	if h.Typeflag == tar.TypeDir {
		k = isDir
	} else if leaf == u.root {
		return "", false, &needsExtraction{h.Name, "is the root, and not a directory"}
	}
	leaf.here = k
	u.here = append(u.here, leaf)
	if k == isOther && writtenThrough(leaf) {
		return "", false, &needsExtraction{h.Name, "is not a directory, and a layer above wrote below it, through it"}
	}
	if hidden(ns) {
		return name, false, nil
	}
	if k == isOther && leaf.implicit {
		// A lower layer's symlink (or file) where an upper layer put
		// entries: the extractor wrote them through it.
		return "", false, &needsExtraction{h.Name, "is not a directory, and a layer above wrote below it"}
	}
	if h.Typeflag == tar.TypeLink {
		t := path.Clean(strings.TrimLeft(h.Linkname, "/"))
		tns, err := u.walk(h.Name, t)
		if err != nil {
			return "", false, err
		}
		if hidden(tns) {
			return "", false, &needsExtraction{h.Name, fmt.Sprintf("is a hard link to %q, which a layer above replaced", h.Linkname)}
		}
		if tns[len(tns)-1] == leaf {
			return "", false, &needsExtraction{h.Name, "is a hard link to itself"}
		}
		l := hardLink{name: name, node: leaf, target: tns[len(tns)-1], targetName: t, layer: u.layer, seq: u.seq, attrs: attrs(h)}
		if err := track(&u.tracked, h.Name, l.attrs.xattrs); err != nil {
			return "", false, err
		}
		u.links = append(u.links, l)
	}
	if leaf.implicit {
		// Counted in its directory when it was marked.
		leaf.implicit = false
		leaf.parent.entries--
	}
	if err := u.markParents(h.Name, ns); err != nil {
		return "", false, err
	}
	w := &written{layer: u.layer, seq: u.seq, dir: k == isDir}
	if !w.dir {
		w.attrs = attrs(h)
		if err := track(&u.tracked, h.Name, w.attrs.xattrs); err != nil {
			return "", false, err
		}
	}
	leaf.out = w
	if err := u.addEntry(h.Name, leaf); err != nil {
		return "", false, err
	}
	return name, true, nil
}

// wroteBelow records that the current layer writes below each parent of
// the last of ns (a walk), up to one it has an entry of its own at.
func (u *union) wroteBelow(ns []*pathNode) {
	for i := len(ns) - 2; i >= 1; i-- {
		a := ns[i]
		if a.here != 0 || a.writtenBelow <= u.layer {
			// Its own entry recorded the rest, or an entry of this
			// layer did.
			return
		}
		a.writtenBelow = u.layer
	}
}

// writtenThrough says whether a layer above n's (the current) one wrote
// below n while nothing between them had replaced n, or emptied or
// replaced a parent: through n, were n a symlink. (Whatever was recorded
// is of the layers above: endLayer records the current one's.)
func writtenThrough(n *pathNode) bool {
	w := n.writtenBelow
	if w == noLayer {
		return false
	}
	if n.replaced < w {
		return false
	}
	for a := n.parent; a != nil; a = a.parent {
		if a.replaced < w || a.emptied < w {
			return false
		}
	}
	return true
}

// markParents records the parents of the last of ns (a walk) that are not
// passed on as implicit: made by the squashfs writer, or at the end
// (implicitDirs).
func (u *union) markParents(entry string, ns []*pathNode) error {
	for i := len(ns) - 2; i >= 1; i-- {
		a := ns[i]
		if a.out != nil || a.implicit {
			return nil
		}
		a.implicit = true
		u.made = append(u.made, a)
		u.implicits = append(u.implicits, a)
		if err := u.addEntry(entry, a); err != nil {
			return err
		}
	}
	return nil
}

// addEntry counts n (not the root) in its directory, and hands the layers
// to extraction when that directory has more than maxDirEntries.
func (u *union) addEntry(entry string, n *pathNode) error {
	d := n.parent
	if d == nil {
		return nil
	}
	if d.entries++; d.entries > maxDirEntries {
		return &needsExtraction{entry, fmt.Sprintf("makes %q a directory of more than %d entries, which tar2sqfs adds slowly", d.path(), maxDirEntries)}
	}
	return nil
}

// needDir records that the last of ns (a walk; not hidden) must be a
// directory of the image, made as an extractor makes a missing parent,
// unless a lower layer has it.
func (u *union) needDir(entry string, ns []*pathNode) error {
	dir := ns[len(ns)-1]
	if dir.out != nil {
		if !dir.out.dir {
			return &needsExtraction{entry, fmt.Sprintf("lies below %q, which is not a directory", dir.path())}
		}
		return nil
	}
	if !dir.implicit {
		dir.implicit = true
		u.made = append(u.made, dir)
		u.implicits = append(u.implicits, dir)
		if err := u.addEntry(entry, dir); err != nil {
			return err
		}
	}
	return u.markParents(entry, ns)
}

// implicitDirs lists, parents first, the directories no layer gave an
// entry of their own: each is made as an extractor makes a missing
// parent (root's, 0755).
func (u *union) implicitDirs() []string {
	var dirs []string
	for _, n := range u.implicits {
		if n.implicit {
			dirs = append(dirs, n.path())
		}
	}
	sort.Strings(dirs)
	return dirs
}

// endLayer applies the current layer's whiteouts, opaque directories and
// entries to the layers below it.
func (u *union) endLayer() error {
	if len(u.whiteouts) > 0 {
		for _, list := range [][]*pathNode{u.here, u.made} {
			for _, p := range list {
				for a := p; a != nil; a = a.parent {
					if a.gone {
						return &needsExtraction{p.path(), fmt.Sprintf("shares its layer with a whiteout of %q", a.path())}
					}
				}
			}
		}
	}
	if len(u.opaques) > 0 {
		// An extractor's opaque directory removes, in its own layer too,
		// whatever the layer did not name itself: the directories it made
		// for entries below, with those entries.
		for _, list := range [][]*pathNode{u.here, u.made} {
			for _, p := range list {
				named := p.here != 0
				for a := p.parent; a != nil; a = a.parent {
					if a.opaqued && !named {
						return &needsExtraction{p.path(), fmt.Sprintf("lies below %q, made opaque in its own layer, in a directory the layer does not name", a.path())}
					}
					named = named && a.here != 0
				}
			}
		}
	}
	for _, n := range u.here {
		if n.above == 0 {
			n.above = n.here
		}
		n.here = 0
		n.replaced = min(n.replaced, u.layer)
	}
	for _, n := range u.whiteouts {
		if n.above == 0 {
			n.above = isGone
		}
		n.gone = false
		n.replaced = min(n.replaced, u.layer)
	}
	for _, n := range u.opaques {
		n.opaque = true
		n.opaqued = false
		n.emptied = min(n.emptied, u.layer)
	}
	u.here, u.made, u.whiteouts, u.opaques = nil, nil, nil, nil
	return nil
}

// finish checks, once every layer is in, that each hard link passed on
// names the file it named when its layer was applied.
func (u *union) finish() error {
	for _, l := range u.links {
		t := l.target.out
		switch {
		case t == nil || t.dir:
			return &needsExtraction{l.name, fmt.Sprintf("is a hard link to %q, which the image does not hold as a file", l.targetName)}
		case t.layer > l.layer || t.layer == l.layer && t.seq > l.seq:
			return &needsExtraction{l.name, fmt.Sprintf("is a hard link to %q, which was written after it", l.targetName)}
		case t.attrs != l.attrs:
			// An extractor gives the file the link's mode, owner and
			// time; the squashfs writer keeps the file's.
			return &needsExtraction{l.name, fmt.Sprintf("is a hard link to %q with other attributes", l.targetName)}
		}
	}
	return nil
}
