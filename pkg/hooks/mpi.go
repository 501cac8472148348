package hooks

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/podman-hpc/podman-hpc/pkg/devices"
)

// MPILibDir is where the mpi module binds the host MPI's dependency
// libraries; the tasks' LD_LIBRARY_PATH starts with it.
const MPILibDir = "/.podman-hpc/mpi/lib"

// ABICheck is how strictly the mpi module compares a host library's version
// with the image's before swapping them.
type ABICheck string

// The checks, from the loosest: the same major version (the soname's
// number, which is the MPICH ABI's promise); also a host minor version at
// least the image's (the image may call what a newer library added); the
// very same version.
const (
	ABIMajor  ABICheck = "major"
	ABIFull   ABICheck = "full"
	ABIStrict ABICheck = "strict"
)

// ParseABICheck reads major, full or strict.
func ParseABICheck(s string) (ABICheck, error) {
	switch c := ABICheck(s); c {
	case ABIMajor, ABIFull, ABIStrict:
		return c, nil
	}
	return "", fmt.Errorf("%q: want major, full or strict", s)
}

// compatible says whether host version h may replace image version c;
// when it may not, why says what differs; note is a warning when it may.
func (a ABICheck) compatible(h, c []int) (ok bool, why, note string) {
	hv, cv := pad3(h), pad3(c)
	switch {
	case hv[0] != cv[0]:
		return false, "the major versions differ", ""
	case a == ABIStrict && hv != cv:
		return false, "the versions differ", ""
	case hv[1] < cv[1] && a == ABIFull:
		return false, "the host's minor version is older than the image's", ""
	case hv[1] < cv[1]:
		return true, "", "the host's minor version is older than the image's: a program using newer functions will fail to load"
	}
	return true, "", ""
}

func pad3(v []int) [3]int {
	var out [3]int
	copy(out[:], v)
	return out
}

// stdLibDirs are searched in an image without an ld.so.cache (musl).
var stdLibDirs = []string{"/lib64", "/usr/lib64", "/lib", "/usr/lib", "/usr/local/lib",
	"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu"}

// MPI swaps the image's MPI for the host's, as Sarus does: each host
// library in Libs (e.g. Cray MPICH's libmpi.so.12) is bound over the
// image's libraries of the same soname (found through the image's
// ld.so.cache), after the ABI check; an image whose library of that name
// has another major version is refused. DependencyLibs (libfabric, ...) are
// bound into MPILibDir, Devices (/dev/cxi*, /dev/xpmem) created, Env set.
// It applies only to the jobs that ask (--container-hooks=mpi).
type MPI struct {
	Libs           []string // host libraries, paths or patterns
	DependencyLibs []string // paths or patterns
	Devices        []string // device node paths or patterns; none matching is fine
	Env            []string // NAME=VALUE for the tasks
	Check          ABICheck // "" is major
}

// Name implements Module.
func (MPI) Name() string { return "mpi" }

// OptIn implements OptIn: the swap is for the jobs that ask for it.
func (MPI) OptIn() bool { return true }

// Apply implements Module.
func (m MPI) Apply(ctx context.Context, r Request) (Result, error) {
	res, err := m.apply(r)
	if err != nil {
		return Result{}, fmt.Errorf("mpi: %w", err)
	}
	return res, nil
}

func (m MPI) apply(r Request) (Result, error) {
	var res Result
	check := m.Check
	if check == "" {
		check = ABIMajor
	}
	if len(m.Libs) == 0 {
		return res, errors.New("not configured on this node (mpi_libs is empty); ask your admin, or run without --container-hooks=mpi")
	}
	host, err := hostLibs(r.HostRoot, m.Libs)
	if err != nil {
		return res, err
	}
	var swapped []string
	for _, h := range host {
		image, err := imageLibs(r.ImageRoot, devices.LinkerName(h.Soname))
		if err != nil {
			return res, err
		}
		// The loader tells ABIs apart by the soname's number: an image's
		// libmpi.so.40 (Open MPI) is another MPI, left alone when the image
		// also has a libmpi.so.12, and the reason for refusing when not.
		var same, other []devices.Library
		for _, c := range image {
			if pad3(c.Version)[0] == pad3(h.Version)[0] {
				same = append(same, c)
			} else {
				other = append(other, c)
			}
		}
		if len(same) == 0 && len(other) > 0 {
			same = other[:1]
		}
		for _, c := range same {
			ok, why, note := check.compatible(h.Version, c.Version)
			if !ok {
				return res, fmt.Errorf("the host's %s is not ABI-compatible with the image's %s (mpi_abi_check = %s: %s); use an image built with a compatible MPI, or run without --container-hooks=mpi",
					h, c, check, why)
			}
			if note != "" {
				res.Notes = append(res.Notes, fmt.Sprintf("mpi: the host's %s replaces the image's %s, but %s", h, c, note))
			}
			res.Mounts = append(res.Mounts, bindRO(r.HostRoot, h.Real, c.Real))
			swapped = append(swapped, fmt.Sprintf("%s over %s", h, c.Real))
		}
	}
	if len(swapped) == 0 {
		var names []string
		for _, h := range host {
			names = append(names, h.Soname)
		}
		return res, fmt.Errorf("the image has no %s to replace; use an image with an MPICH-ABI MPI, or run without --container-hooks=mpi", strings.Join(names, " or "))
	}
	for _, p := range m.DependencyLibs {
		matches := devices.Glob(r.HostRoot, p)
		if len(matches) == 0 {
			return res, fmt.Errorf("mpi_dependency_libs: %s: no such file on this node; ask your admin", p)
		}
		for _, f := range matches {
			res.Mounts = append(res.Mounts, bindRO(r.HostRoot, f, path.Join(MPILibDir, path.Base(f))))
		}
		res.Env = []string{"LD_LIBRARY_PATH=" + MPILibDir}
	}
	if err := deviceResult(&res, r.HostRoot, devices.Glob(r.HostRoot, m.Devices...)); err != nil {
		return res, err
	}
	res.Env = append(res.Env, m.Env...)
	res.Summary = fmt.Sprintf("%s; %d device nodes", strings.Join(swapped, ", "), len(res.Devices))
	return res, nil
}

// hostLibs reads the host's libraries, one per name up to ".so".
func hostLibs(root string, patterns []string) ([]devices.Library, error) {
	var out []devices.Library
	byFamily := map[string]devices.Library{}
	for _, p := range patterns {
		matches := devices.Glob(root, p)
		if len(matches) == 0 {
			return nil, fmt.Errorf("mpi_libs: %s: no such file on this node; ask your admin", p)
		}
		for _, f := range matches {
			l, err := devices.ReadLibrary(root, f)
			if err != nil {
				return nil, fmt.Errorf("mpi_libs: %w", err)
			}
			family := devices.LinkerName(l.Soname)
			if prev, ok := byFamily[family]; ok {
				if prev.Real != l.Real {
					return nil, fmt.Errorf("mpi_libs: two %s libraries, %s and %s; ask your admin to keep one", family, prev.Real, l.Real)
				}
				continue
			}
			byFamily[family] = l
			out = append(out, l)
		}
	}
	return out, nil
}

// imageLibs returns the image's libraries named family (libmpich.so) with
// a version (libmpich.so.12), from its ld.so.cache, else from the standard
// directories. Entries that are not readable ELF files are skipped.
func imageLibs(root, family string) ([]devices.Library, error) {
	var paths []string
	cache, err := devices.ReadLdCache(root)
	switch {
	case errors.Is(err, devices.ErrNoLdCache):
		for _, d := range stdLibDirs {
			paths = append(paths, devices.Glob(root, path.Join(d, family+".*"))...)
		}
	case err != nil:
		return nil, fmt.Errorf("the image's %w", err)
	}
	for _, e := range cache {
		if devices.LinkerName(e.Name) == family && e.Name != family {
			paths = append(paths, e.Path)
		}
	}
	var out []devices.Library
	seen := map[string]bool{}
	for _, p := range paths {
		l, err := devices.ReadLibrary(root, p)
		if err != nil || seen[l.Real] || devices.LinkerName(l.Soname) != family {
			continue
		}
		seen[l.Real] = true
		out = append(out, l)
	}
	return out, nil
}
