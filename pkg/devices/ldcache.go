package devices

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// LdEntry is one library of a linker cache: the name the loader looks up
// (a soname such as "libcuda.so.1") and the path it maps to.
type LdEntry struct {
	Name string
	Path string
}

// ErrNoLdCache is returned when a tree has no /etc/ld.so.cache.
var ErrNoLdCache = errors.New("no /etc/ld.so.cache")

// glibc's cache formats (elf/cache.c): the old "ld.so-1.7.0" table, still
// written before the new one by glibc < 2.32 ("compat"), and the new
// "glibc-ld.so.cache1.1" table, whose string offsets count from its own header.
const (
	oldMagic       = "ld.so-1.7.0"
	newMagic       = "glibc-ld.so.cache1.1"
	oldHeaderLen   = 16 // magic[11], pad, nlibs
	oldEntryLen    = 12 // flags, key, value
	newHeaderLen   = 48
	newEntryLen    = 24 // flags, key, value, osversion, hwcap
	flagTypeMask   = 0x00ff
	flagELFLibc6   = 0x0003
	flagArchMask   = 0xff00
	maxLdCacheSize = 64 << 20
)

// hostArch is the cache's arch flag for 64-bit libraries of this machine; 0
// accepts every arch.
var hostArch = map[string]uint32{"amd64": 0x0300, "arm64": 0x0a00, "ppc64le": 0x0500, "riscv64": 0x1000}[runtime.GOARCH]

// ReadLdCache returns the libraries of root's /etc/ld.so.cache that this
// machine's 64-bit programs load, in the cache's order (the loader's order
// of preference). The path is resolved inside root, so an image's cache is
// read from the image even through symlinks. A tree without a cache returns
// ErrNoLdCache.
func ReadLdCache(root string) ([]LdEntry, error) {
	p, err := securejoin.SecureJoin(root, "/etc/ld.so.cache")
	if err != nil {
		return nil, fmt.Errorf("ld.so.cache: %w", err)
	}
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoLdCache
	}
	if err != nil {
		return nil, fmt.Errorf("ld.so.cache: %w", err)
	}
	if fi.Size() > maxLdCacheSize {
		return nil, fmt.Errorf("ld.so.cache: %d bytes, larger than %d", fi.Size(), maxLdCacheSize)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("ld.so.cache: %w", err)
	}
	return ParseLdCache(b)
}

// ParseLdCache decodes a glibc ld.so.cache (new format, alone or after the
// old one). It never panics on bad input: an image's cache is untrusted.
func ParseLdCache(b []byte) ([]LdEntry, error) {
	off := 0
	if strings.HasPrefix(string(b), oldMagic) {
		if len(b) < oldHeaderLen {
			return nil, fmt.Errorf("ld.so.cache: truncated header")
		}
		n := int(binary.LittleEndian.Uint32(b[12:]))
		if n < 0 || n > len(b)/oldEntryLen {
			return nil, fmt.Errorf("ld.so.cache: bad library count %d", n)
		}
		off = (oldHeaderLen + n*oldEntryLen + 7) &^ 7
	}
	if off+newHeaderLen > len(b) || string(b[off:off+len(newMagic)]) != newMagic {
		return nil, fmt.Errorf("ld.so.cache: not a glibc cache in the %q format", newMagic)
	}
	c := b[off:]
	n := int(binary.LittleEndian.Uint32(c[20:]))
	if n < 0 || n > (len(c)-newHeaderLen)/newEntryLen {
		return nil, fmt.Errorf("ld.so.cache: bad library count %d", n)
	}
	str := func(o uint32) (string, bool) {
		if int64(o) >= int64(len(c)) {
			return "", false
		}
		s := c[o:]
		for i, ch := range s {
			if ch == 0 {
				return string(s[:i]), true
			}
		}
		return "", false
	}
	out := make([]LdEntry, 0, n)
	for i := 0; i < n; i++ {
		e := c[newHeaderLen+i*newEntryLen:]
		flags := binary.LittleEndian.Uint32(e)
		if flags&flagTypeMask != flagELFLibc6 || (hostArch != 0 && flags&flagArchMask != hostArch) {
			continue
		}
		key, ok1 := str(binary.LittleEndian.Uint32(e[4:]))
		val, ok2 := str(binary.LittleEndian.Uint32(e[8:]))
		if !ok1 || !ok2 || key == "" || !strings.HasPrefix(val, "/") {
			return nil, fmt.Errorf("ld.so.cache: entry %d: bad string offset", i)
		}
		out = append(out, LdEntry{Name: key, Path: val})
	}
	return out, nil
}
