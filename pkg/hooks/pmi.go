package hooks

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/podman-hpc/podman-hpc/pkg/wire"
)

// DefaultPMIDirs are where Slurm's mpi/pmix plugin puts a step's PMIx
// server files with Slurm's default SlurmdSpoolDir and TmpFS.
var DefaultPMIDirs = []string{"/var/spool/slurmd/pmix.%j.%s", "/tmp/spmix_appdir_%u_%j.%s"}

// PMI makes Slurm's PMI reachable from inside. PMI-2 needs nothing: the
// tasks inherit slurmstepd's PMI_FD and PMI_* variables and share its PID
// and network namespaces. PMIx clients need their server's directories at
// the same paths: this module binds the step's own (Dirs, made by Slurm
// before the container, owned by the job user), and the one
// PMIX_SERVER_TMPDIR names when Slurm sets it before the container. A site
// whose mounts already hold Slurm's whole spool and TmpFS does not need it.
//
// Every one of them is a UserMount: the variable is the job's to set, and
// the directories lie where users can create names (Slurm's TmpFS is /tmp by
// default), so they are opened with the job user's permissions, never
// root's.
type PMI struct {
	// Dirs are the step's directories: %j is the job id, %s the step id,
	// %u the user's uid, %n the node's name. Those that do not exist are
	// skipped. nil means DefaultPMIDirs.
	Dirs []string
}

// Name implements Module.
func (PMI) Name() string { return "pmi" }

// Apply implements Module.
func (p PMI) Apply(ctx context.Context, r Request) (Result, error) {
	patterns := p.Dirs
	if patterns == nil {
		patterns = DefaultPMIDirs
	}
	repl := strings.NewReplacer("%j", r.Job, "%s", r.Step, "%u", strconv.FormatUint(uint64(r.UID), 10), "%n", r.Node, "%%", "%")
	var dirs []string
	for _, pat := range patterns {
		dirs = append(dirs, repl.Replace(pat))
	}
	if tmpdir, ok := r.Env["PMIX_SERVER_TMPDIR"]; ok {
		if err := checkServerTmpdir(tmpdir); err != nil {
			return Result{}, err
		}
		dirs = append(dirs, tmpdir)
	}
	var res Result
	seen := map[string]bool{}
	for _, dir := range dirs {
		dir = filepath.Clean(dir)
		if !filepath.IsAbs(dir) || dir == "/" || seen[dir] {
			continue
		}
		seen[dir] = true
		res.UserMounts = append(res.UserMounts, bindRW(r.HostRoot, dir, dir))
	}
	sort.Slice(res.UserMounts, func(i, j int) bool { return res.UserMounts[i].Destination < res.UserMounts[j].Destination })
	res.Summary = fmt.Sprintf("%d PMIx directories (if present)", len(res.UserMounts))
	return res, nil
}

// systemDirs are the container's own trees: the runtime makes /proc, /sys
// and /dev, and wire.ReservedDir is the daemon's. A PMIx directory is never
// one of them or inside one.
var systemDirs = []string{"/proc", "/sys", "/dev", wire.ReservedDir}

// checkServerTmpdir refuses a PMIX_SERVER_TMPDIR (the job's to set) that
// would bind over the container's own trees: opened as the user it gains
// them nothing on the host, but inside it would shadow the runtime's /dev or
// the daemon's files, which no PMIx server directory is.
func checkServerTmpdir(dir string) error {
	clean := filepath.Clean(dir)
	for _, sys := range systemDirs {
		if clean == sys || strings.HasPrefix(clean, sys+"/") {
			return fmt.Errorf("PMIX_SERVER_TMPDIR=%s lies in %s, which the container keeps for itself: unset it or name the directory Slurm's mpi/pmix plugin made for the step", dir, sys)
		}
	}
	return nil
}
