package devices

import (
	"debug/elf"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
)

// Library is a shared library as the loader sees it.
type Library struct {
	Path    string // where it was found (inside the tree), often a symlink
	Real    string // the file behind Path's symlinks (inside the tree)
	Soname  string // DT_SONAME, or the real file's name when it has none
	Version []int  // the numbers after ".so." in the real file's name: 12.2.2
}

// ReadLibrary reads the library at path inside root, resolving symlinks
// inside root (an image's absolute symlinks stay in the image). An image's
// file is untrusted: a file debug/elf chokes on is an error, never a panic.
func ReadLibrary(root, path string) (l Library, err error) {
	defer func() {
		if r := recover(); r != nil {
			l, err = Library{}, fmt.Errorf("library %s: bad ELF file: %v", path, r)
		}
	}()
	full, err := securejoin.SecureJoin(root, path)
	if err != nil {
		return Library{}, fmt.Errorf("library %s: %w", path, err)
	}
	rel, err := filepath.Rel(root, full)
	if err != nil {
		return Library{}, fmt.Errorf("library %s: %w", path, err)
	}
	l = Library{Path: path, Real: "/" + rel}
	f, err := elf.Open(full)
	if err != nil {
		return Library{}, fmt.Errorf("library %s: %w", path, err)
	}
	defer f.Close()
	if names, err := f.DynString(elf.DT_SONAME); err == nil && len(names) > 0 {
		l.Soname = names[0]
	} else {
		l.Soname = filepath.Base(l.Real)
	}
	l.Version = VersionOf(filepath.Base(l.Real))
	if len(l.Version) == 0 {
		l.Version = VersionOf(l.Soname)
	}
	return l, nil
}

// String names the library by its real file, e.g. libmpich.so.12.2.2.
func (l Library) String() string { return filepath.Base(l.Real) }

// LinkerName is name up to and including ".so": "libmpich.so.12" and
// "libmpich.so.12.2.2" are both "libmpich.so".
func LinkerName(name string) string {
	if i := strings.Index(name, ".so"); i >= 0 && (len(name) == i+3 || name[i+3] == '.') {
		return name[:i+3]
	}
	return name
}

// VersionOf returns the numbers after ".so." in a library's file name:
// [12 2 2] for libmpich.so.12.2.2, nil for libfoo.so. It stops at the first
// part that is not a number.
func VersionOf(name string) []int {
	ln := LinkerName(name)
	if ln == name || !strings.HasSuffix(ln, ".so") {
		return nil
	}
	var v []int
	for _, part := range strings.Split(strings.TrimPrefix(name[len(ln):], "."), ".") {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			break
		}
		v = append(v, n)
	}
	return v
}

// FormatVersion writes v as 12.2.2.
func FormatVersion(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ".")
}
