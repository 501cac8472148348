package squashfs

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"regexp"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/podman-hpc/podman-hpc/pkg/image"
)

// A squashfs file a user names is checked in userspace before the kernel
// parses it, for content no image may carry: device nodes, and trusted.*
// xattrs (overlayfs obeys trusted.overlay.* on its lower layers, whatever
// the mount flags). Setuid and setgid bits and security.* xattrs (file
// capabilities) are let through, as in registry images: the image is
// mounted nosuid, which the kernel applies to both, and tasks run with
// no_new_privs; refusing them would refuse every --container-save of an
// ordinary distribution image (su, passwd, ping) when it is reused. Modes
// and types come from unsquashfs's listing, which walks the directory
// tree as the kernel does; xattrs from our own reading of the xattr
// tables, which unsquashfs does not list. Both read the root-owned copy
// that is then published and mounted, never the user's file.

// unsafeFile is refused content in a squashfs file; it wraps
// ErrUnsafeFile.
type unsafeFile struct{ path, reason string }

func (e *unsafeFile) Error() string { return fmt.Sprintf("%s %s", e.path, e.reason) }
func (e *unsafeFile) Unwrap() error { return image.ErrUnsafeFile }

// lsMode starts every entry's line of unsquashfs -lln -UTC -d ""; lsLine
// is the whole line: mode, uid/gid, size (or major, minor), date, time,
// path.
var (
	lsMode = regexp.MustCompile(`^[-dlcbps][-rwxsStT]{9} `)
	lsLine = regexp.MustCompile(`^[-dlcbps][-rwxsStT]{9} \S+ +(?:\d+|\d+, *\d+) \d{4}-\d\d-\d\d \d\d:\d\d (.*)$`)
)

// maxListLine bounds one line of the listing: a path is at most a few KiB.
const maxListLine = 1 << 20

// checkListing reads unsquashfs's long listing and refuses device nodes.
// Lines that are not entries (a name
// with a newline in it continues on the next line) are skipped: every
// entry still has its own line.
func checkListing(r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxListLine)
	for sc.Scan() {
		line := sc.Bytes()
		if !lsMode.Match(line) {
			continue
		}
		// A line that starts as an entry is judged by its mode even if the
		// rest is not as expected (the path then goes unnamed).
		mode, path := line[:10], "an entry"
		if m := lsLine.FindSubmatch(line); m != nil {
			if path = string(m[1]); path == "" {
				path = "/"
			}
		}
		if mode[0] == 'c' || mode[0] == 'b' {
			return &unsafeFile{path, "is a device node: images may not contain device nodes (the container's /dev is made on the node); rebuild the squashfs without them (mksquashfs ... -e dev)"}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("%w: reading the listing: %v", image.ErrNotSquashfs, err)
	}
	return nil
}

// The squashfs 4.0 xattr tables (fs/squashfs/xattr.h in Linux).
const (
	noTable         = ^uint64(0) // SQUASHFS_INVALID_BLK: no xattr table
	metaBlockSize   = 8192       // uncompressed size of a metadata block
	metaUncompBit   = 1 << 15    // in a metadata block's header
	xattrPrefixMask = 0xff
	xattrUser       = 0
	xattrTrusted    = 1
	xattrSecurity   = 2
	// maxXattrWork bounds the entries we read: mksquashfs shares xattr
	// sets between inodes, so a real image has few; a crafted one could
	// make millions of ids point at one huge set.
	maxXattrWork = 1 << 22
)

// checkXattrs reads every xattr set of the squashfs in r (size bytes,
// superblock sb) and refuses trusted.* names. Every set an
// inode can name is reached through the id table, which is what it
// reads: a sequential read of the key/value area could be misled by an
// id pointing into the middle of a value. Files compressed with lzo can
// have no xattrs: we cannot decompress lzo.
func checkXattrs(r io.ReaderAt, size int64, sb superblock) error {
	if sb.XattrTable == noTable {
		return nil
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: xattr table: %s", image.ErrNotSquashfs, fmt.Sprintf(format, a...))
	}
	if sb.XattrTable > uint64(size)-16 || sb.XattrTable >= sb.BytesUsed {
		return bad("beyond the end")
	}
	var hdr struct {
		KVStart uint64
		IDs     uint32
		_       uint32
	}
	if err := binary.Read(io.NewSectionReader(r, int64(sb.XattrTable), 16), binary.LittleEndian, &hdr); err != nil {
		return bad("%v", err)
	}
	if hdr.IDs == 0 {
		return nil
	}
	if sb.Compression == 3 {
		return &unsafeFile{"the file", "has xattrs, which cannot be checked in an lzo squashfs: rebuild it with mksquashfs -no-xattrs, or another -comp"}
	}
	if hdr.IDs > maxXattrWork || hdr.KVStart >= sb.XattrTable {
		return bad("%d ids from %d", hdr.IDs, hdr.KVStart)
	}
	m := &metaReader{r: r, end: int64(sb.XattrTable), decompress: decompressor(sb.Compression), cache: map[int64][]byte{}}
	// The id entries (16 bytes each) fill metadata blocks whose places
	// follow the header.
	nBlocks := (uint64(hdr.IDs)*16 + metaBlockSize - 1) / metaBlockSize
	locs := make([]uint64, nBlocks)
	if err := binary.Read(io.NewSectionReader(r, int64(sb.XattrTable)+16, int64(nBlocks)*8), binary.LittleEndian, locs); err != nil {
		return bad("block list: %v", err)
	}
	type set struct {
		ref   uint64
		count uint32
	}
	seen := map[set]bool{}
	work := 0
	for i := range uint64(hdr.IDs) {
		blk, off := i*16/metaBlockSize, i*16%metaBlockSize
		id, err := m.read(int64(locs[blk]), int(off), 16)
		if err != nil {
			return bad("id %d: %v", i, err)
		}
		s := set{ref: binary.LittleEndian.Uint64(id), count: binary.LittleEndian.Uint32(id[8:])}
		if seen[s] {
			continue
		}
		seen[s] = true
		if work += int(s.count); work > maxXattrWork {
			return bad("more than %d entries", maxXattrWork)
		}
		// ref: block offset from the key/value area's start (high 32
		// bits), offset in that block (low 16).
		pos, in := int64(hdr.KVStart)+int64(s.ref>>16), int(s.ref&0xffff)
		for range s.count {
			e, err := m.readOn(&pos, &in, 4)
			if err != nil {
				return bad("entry: %v", err)
			}
			typ, nameLen := binary.LittleEndian.Uint16(e), int(binary.LittleEndian.Uint16(e[2:]))
			name, err := m.readOn(&pos, &in, nameLen)
			if err != nil {
				return bad("name: %v", err)
			}
			switch typ & xattrPrefixMask {
			case xattrUser, xattrSecurity:
			case xattrTrusted:
				return &unsafeFile{"an inode", fmt.Sprintf("carries xattr %q: trusted.* xattrs steer overlayfs; rebuild the squashfs with -no-xattrs", "trusted."+string(name))}
			default:
				return bad("unknown xattr type %d", typ)
			}
			v, err := m.readOn(&pos, &in, 4)
			if err != nil {
				return bad("value: %v", err)
			}
			if _, err := m.readOn(&pos, &in, int(binary.LittleEndian.Uint32(v))); err != nil {
				return bad("value: %v", err)
			}
		}
	}
	return nil
}

// metaReader reads squashfs metadata: a chain of blocks, each a 2-byte
// header (length, and whether it is stored uncompressed) and at most 8 KiB
// of data once decompressed, all before end.
type metaReader struct {
	r          io.ReaderAt
	end        int64
	decompress func([]byte) ([]byte, error)
	cache      map[int64][]byte
}

// block returns the data of the block at pos, and where the next begins.
func (m *metaReader) block(pos int64) ([]byte, int64, error) {
	if pos < 0 || pos+2 > m.end {
		return nil, 0, errors.New("metadata block out of bounds")
	}
	var h [2]byte
	if _, err := m.r.ReadAt(h[:], pos); err != nil {
		return nil, 0, err
	}
	n := int64(binary.LittleEndian.Uint16(h[:]) &^ metaUncompBit)
	next := pos + 2 + n
	if n == 0 || n > metaBlockSize || next > m.end {
		return nil, 0, errors.New("bad metadata block length")
	}
	if b, ok := m.cache[pos]; ok {
		return b, next, nil
	}
	raw := make([]byte, n)
	if _, err := m.r.ReadAt(raw, pos+2); err != nil {
		return nil, 0, err
	}
	b := raw
	if binary.LittleEndian.Uint16(h[:])&metaUncompBit == 0 {
		var err error
		if b, err = m.decompress(raw); err != nil {
			return nil, 0, fmt.Errorf("decompressing: %w", err)
		}
	}
	if len(m.cache) < 4096 {
		m.cache[pos] = b
	}
	return b, next, nil
}

// read returns n bytes from offset off of the block at pos onwards.
func (m *metaReader) read(pos int64, off, n int) ([]byte, error) {
	return m.readOn(&pos, &off, n)
}

// readOn reads n bytes at (*pos, *off) and moves both past them,
// following the chain into the next blocks (a read that ends a block
// leaves *off at its end; the next one moves on).
func (m *metaReader) readOn(pos *int64, off *int, n int) ([]byte, error) {
	if n < 0 || n > 1<<20 {
		return nil, errors.New("implausible length")
	}
	out := make([]byte, 0, n)
	for len(out) < n {
		b, next, err := m.block(*pos)
		if err != nil {
			return nil, err
		}
		if *off > len(b) {
			return nil, errors.New("offset beyond its block")
		}
		k := min(n-len(out), len(b)-*off)
		out = append(out, b[*off:*off+k]...)
		*off += k
		if *off == len(b) && len(out) < n {
			*pos, *off = next, 0
		}
	}
	return out, nil
}

// decompressor returns the function for the superblock's compression id
// (those the kernel mounts, except lzo). Output is bounded to a block.
func decompressor(id uint16) func([]byte) ([]byte, error) {
	limited := func(r io.Reader, err error) ([]byte, error) {
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(r, metaBlockSize+1))
		if err == nil && len(b) > metaBlockSize {
			err = errors.New("block larger than 8 KiB")
		}
		return b, err
	}
	switch id {
	case 1:
		return func(b []byte) ([]byte, error) { return limited(zlib.NewReader(bytes.NewReader(b))) }
	case 4:
		return func(b []byte) ([]byte, error) { return limited(xz.NewReader(bytes.NewReader(b))) }
	case 5:
		return func(b []byte) ([]byte, error) { return lz4Block(b, metaBlockSize) }
	case 6:
		return func(b []byte) ([]byte, error) {
			d, err := zstd.NewReader(bytes.NewReader(b), zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<20))
			if err != nil {
				return nil, err
			}
			defer d.Close()
			return limited(d, nil)
		}
	}
	return func([]byte) ([]byte, error) { return nil, fmt.Errorf("compression id %d not supported", id) }
}

// lz4Block decodes one LZ4 block (the format of LZ4_compress_default,
// which squashfs uses) of at most max bytes.
func lz4Block(src []byte, max int) ([]byte, error) {
	errCorrupt := errors.New("corrupt lz4 block")
	dst := make([]byte, 0, max)
	length := func(i *int, n int) (int, error) {
		if n != 15 {
			return n, nil
		}
		for {
			if *i >= len(src) {
				return 0, errCorrupt
			}
			b := int(src[*i])
			*i++
			if n += b; n > max {
				return 0, errCorrupt
			}
			if b != 255 {
				return n, nil
			}
		}
	}
	for i := 0; i < len(src); {
		token := int(src[i])
		i++
		lit, err := length(&i, token>>4)
		if err != nil {
			return nil, err
		}
		if i+lit > len(src) || len(dst)+lit > max {
			return nil, errCorrupt
		}
		dst = append(dst, src[i:i+lit]...)
		if i += lit; i == len(src) {
			return dst, nil // the last sequence has literals only
		}
		if i+2 > len(src) {
			return nil, errCorrupt
		}
		off := int(src[i]) | int(src[i+1])<<8
		i += 2
		n, err := length(&i, token&15)
		if err != nil {
			return nil, err
		}
		n += 4
		if off == 0 || off > len(dst) || len(dst)+n > max {
			return nil, errCorrupt
		}
		start := len(dst) - off
		for k := range n { // byte by byte: the match may overlap itself
			dst = append(dst, dst[start+k])
		}
	}
	return dst, nil
}
