package oci

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// CgroupLayout is how a host mounts its cgroups.
type CgroupLayout int

const (
	CgroupV1     CgroupLayout = iota // controllers in v1 hierarchies only
	CgroupV2                         // one unified hierarchy
	CgroupHybrid                     // v1 controllers plus a cgroup2 hierarchy at unified/
)

func (l CgroupLayout) String() string {
	return [...]string{"v1", "v2", "hybrid"}[l]
}

// ReadCgroupLayout reads the layout of the cgroups mounted at root
// (/sys/fs/cgroup) and, on a hybrid host, the controllers its cgroup2
// hierarchy holds: crun 1.8 refuses a hybrid host whose cgroup2 hierarchy
// has any.
func ReadCgroupLayout(root string) (CgroupLayout, []string, error) {
	magic := func(p string) (int64, error) {
		var st unix.Statfs_t
		if err := unix.Statfs(p, &st); err != nil {
			return 0, err
		}
		return st.Type, nil
	}
	m, err := magic(root)
	if err != nil {
		return 0, nil, fmt.Errorf("cgroups: %w", err)
	}
	if m == unix.CGROUP2_SUPER_MAGIC {
		return CgroupV2, nil, nil
	}
	unified := filepath.Join(root, "unified")
	if m, err := magic(unified); err != nil || m != unix.CGROUP2_SUPER_MAGIC {
		return CgroupV1, nil, nil
	}
	data, err := os.ReadFile(filepath.Join(unified, "cgroup.controllers"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, nil, fmt.Errorf("cgroups: %w", err)
	}
	return CgroupHybrid, strings.Fields(string(data)), nil
}
