//go:build e2e

package e2e

import (
	"strings"
	"testing"
)

// relativeDir is a user directory with a squashfs image (app.sqsh, saved
// from img) and data/f in it.
func relativeDir(t *testing.T, img string) string {
	t.Helper()
	dir := userDir(t, "e2e-relative")
	mustSucceed(t, asUser(t, "sh", "-c", `mkdir -p "$1/data" "$1/sub" && echo in-data >"$1/data/f"`, "sh", dir))
	mustSucceed(t, asUser(t, "srun", "-N1", "--container-image="+img, "--container-save="+dir+"/app.sqsh", "true"))
	return dir
}

// Every relative path means what it means in a shell in the job's working
// directory: --container-image=./app.sqsh, --container-mounts=./:/data (the
// job's directory, not the host's /), a relative source under --chdir, and
// the PYXIS_CONTAINER_* variables alike.
func TestRelativePathsSrun(t *testing.T) {
	dir := relativeDir(t, cluster["SMALL_IMAGE"])
	r := asUserIn(t, dir, "srun", "-N1", "--container-image=./app.sqsh", "--container-mounts=./:/data,data/f:/f",
		"sh", "-c", "grep ^ID= /etc/os-release; cat /f; ls /data")
	mustSucceed(t, r)
	for _, want := range []string{"ID=podman-hpc-small\n", "in-data\n", "app.sqsh\n", "data\n", "sub\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("lacks %q:\n%s", want, r)
		}
	}
	// The job's directory is --chdir's, not srun's.
	r = asUserIn(t, dir, "srun", "-N1", "--chdir="+dir+"/sub", "--container-image=../app.sqsh", "--container-mounts=../data:/d", "cat", "/d/f")
	mustSucceed(t, r)
	if r.stdout != "in-data\n" {
		t.Errorf("under --chdir:\n%s", r)
	}
	r = asUserIn(t, dir, "env", "PYXIS_CONTAINER_IMAGE=./app.sqsh", "PYXIS_CONTAINER_MOUNTS=./data:/d", "PYXIS_CONTAINER_SAVE=from-env.sqsh",
		"srun", "-N1", "cat", "/d/f")
	mustSucceed(t, r)
	if r.stdout != "in-data\n" {
		t.Errorf("from PYXIS_CONTAINER_*:\n%s", r)
	}
	mustSucceed(t, asUser(t, "test", "-s", dir+"/from-env.sqsh"))
}

// In a batch script, the script's container and its srun steps read
// relative paths in the job's directory too: sbatch's options, which the
// steps inherit, in the job's (though the script runs srun from / inside
// the container), and a step's own in the directory the script cd'd to.
// The image has the C library the host's srun needs (batch_mounts).
func TestRelativePathsSbatch(t *testing.T) {
	dir := relativeDir(t, cluster["MPI_IMAGE"])
	r := asUserIn(t, dir, "sh", "-c", `
printf '#!/bin/sh\ncat /d/f\nsrun cat /d/f\ncd "$SLURM_SUBMIT_DIR" && srun --container-image=./app.sqsh --container-mounts=./data:/d2 cat /d2/f\n' >job.sh
id=$(sbatch --parsable -N1 -o out.txt --container-image=./app.sqsh --container-mounts=./data:/d job.sh)
while squeue -h -j "$id" 2>/dev/null | grep -q .; do sleep 0.2; done
cat out.txt`)
	mustSucceed(t, r)
	if strings.Count(r.stdout, "in-data\n") != 3 {
		t.Errorf("the batch script or its steps did not read ./data:\n%s", r)
	}
}
