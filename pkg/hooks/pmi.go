package hooks

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// pmiDirs are the variables through which Slurm's mpi/pmix plugin tells
// PMIx clients where its server's rendezvous files are.
var pmiDirs = []string{"PMIX_SERVER_TMPDIR", "PMIX_SYSTEM_TMPDIR"}

// PMI makes Slurm's PMI reachable from inside. PMI-2 needs nothing: the
// tasks inherit slurmstepd's PMI_FD and PMI_* variables, and share its PID
// and network namespaces. PMIx needs its server's directories at the same
// paths: the site's mounts (Slurm's spool and TmpFS) normally cover them;
// this module also binds the directories the step's PMIX_SERVER_TMPDIR and
// PMIX_SYSTEM_TMPDIR name, when Slurm set them before the container is made
// and they exist.
type PMI struct{}

// Name implements Module.
func (PMI) Name() string { return "pmi" }

// Apply implements Module.
func (PMI) Apply(ctx context.Context, r Request) (Result, error) {
	var res Result
	seen := map[string]bool{}
	for _, v := range pmiDirs {
		dir := filepath.Clean(r.Env[v])
		if !filepath.IsAbs(dir) || dir == "/" || seen[dir] {
			continue
		}
		if fi, err := os.Stat(filepath.Join(r.HostRoot, dir)); err != nil || !fi.IsDir() {
			continue
		}
		seen[dir] = true
		res.Mounts = append(res.Mounts, bindRW(r.HostRoot, dir, dir))
	}
	sort.Slice(res.Mounts, func(i, j int) bool { return res.Mounts[i].Destination < res.Mounts[j].Destination })
	res.Summary = fmt.Sprintf("%d PMIx directories", len(res.Mounts))
	return res, nil
}
