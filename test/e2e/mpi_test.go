//go:build e2e

package e2e

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
)

// checkRing asserts that every rank of an n-rank ring reported in and rank 0
// saw the message come round.
func checkRing(t *testing.T, r result, n int, library string) {
	t.Helper()
	mustSucceed(t, r)
	for rank := 0; rank < n; rank++ {
		if !strings.Contains(r.stdout, fmt.Sprintf("ring: rank %d of %d on ", rank, n)) {
			t.Errorf("rank %d did not report in:\n%s", rank, r)
		}
	}
	if !regexp.MustCompile(`ring: rank 0 got the message back after \d+ laps`).MatchString(r.stdout) {
		t.Errorf("the message did not come round:\n%s", r)
	}
	if !strings.Contains(r.stdout, "ring: library "+library) {
		t.Errorf("not %s:\n%s", library, r)
	}
}

// Open MPI over PMIx, ranks on two nodes, in the image.
func TestMPIRingPMIx(t *testing.T) {
	r := srun(t, "-N2", "--ntasks-per-node=2", "--mpi=pmix", "--container-image="+cluster["MPI_IMAGE"], cluster["MPI_RING"])
	checkRing(t, r, 4, "Open MPI")
}

// MPICH over PMI-2, ranks on two nodes, in the image.
func TestMPIRingPMI2(t *testing.T) {
	r := srun(t, "-N2", "--ntasks-per-node=2", "--mpi=pmi2", "--container-image="+cluster["MPI_IMAGE"], cluster["MPI_RING_MPICH"])
	checkRing(t, r, 4, "MPICH")
}

// A batch script runs inside the image, and its srun (the host's Slurm
// client, bound in) starts MPI steps that inherit the image.
func TestBatchStepsInheritImage(t *testing.T) {
	script := "#!/bin/bash\n#SBATCH --container-image=" + cluster["MPI_IMAGE"] + "\n#SBATCH -N2 --ntasks-per-node=2\n" +
		"grep ^ID= /etc/os-release\nsrun --mpi=pmix " + cluster["MPI_RING"] + "\n"
	id, out := sbatch(t, script)
	if !strings.HasPrefix(out, "ID=debian\n") {
		t.Errorf("job %s: batch script not in the image:\n%s", id, out)
	}
	checkRing(t, result{stdout: out}, 4, "Open MPI")
}
